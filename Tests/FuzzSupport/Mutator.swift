import Foundation

/// Deterministic random mutation for the parsers' fuzz tests: a seeded generator (SplitMix64) and
/// the mutations libFuzzer starts with — bit flips, byte stores, boundary integers where lengths
/// and counts live, insertions, deletions, truncation, splices. The same seed gives the same inputs
/// on every machine, so a failure names its iteration and replays.
public struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public struct Mutator {
    public var random: SeededGenerator
    static let boundaries: [UInt32] = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, 0xFFFF_FFFF]

    public init(seed: UInt64) { random = SeededGenerator(seed: seed) }

    /// One to four mutations of `input` (splices take from `others`).
    public mutating func mutate(_ input: [UInt8], others: [[UInt8]] = []) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &random) { mutateOnce(&bytes, others: others) }
        return bytes
    }

    private mutating func position(_ bytes: [UInt8]) -> Int { bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &random) }

    private mutating func mutateOnce(_ bytes: inout [UInt8], others: [[UInt8]]) {
        switch Int.random(in: 0..<9, using: &random) {
        case 0 where !bytes.isEmpty:
            bytes[position(bytes)] ^= 1 << UInt8.random(in: 0..<8, using: &random)
        case 1 where !bytes.isEmpty:
            bytes[position(bytes)] = UInt8.random(in: 0...255, using: &random)
        case 2 where bytes.count >= 4:
            // A boundary value where a length or count may sit, either width, either byte order.
            let at = Int.random(in: 0...(bytes.count - 2), using: &random)
            let value = Self.boundaries.randomElement(using: &random)!
            let width = at + 4 <= bytes.count && Bool.random(using: &random) ? 4 : 2
            for i in 0..<width { bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(width - 1 - i))) }
        case 3:
            let count = Int.random(in: 1...16, using: &random)
            let insert = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            bytes.insert(contentsOf: insert, at: bytes.isEmpty ? 0 : Int.random(in: 0...bytes.count, using: &random))
        case 4 where !bytes.isEmpty:
            let start = position(bytes)
            bytes.removeSubrange(start..<min(bytes.count, start + Int.random(in: 1...16, using: &random)))
        case 5 where !bytes.isEmpty:
            bytes.removeLast(Int.random(in: 1...bytes.count, using: &random))
        case 6 where !others.isEmpty:
            let other = others.randomElement(using: &random)!
            guard !other.isEmpty else { return }
            let start = position(other)
            let piece = other[start..<min(other.count, start + Int.random(in: 1...64, using: &random))]
            bytes.insert(contentsOf: piece, at: bytes.isEmpty ? 0 : Int.random(in: 0...bytes.count, using: &random))
        case 7 where bytes.count >= 2:
            let start = position(bytes)
            let piece = bytes[start..<min(bytes.count, start + Int.random(in: 1...32, using: &random))]
            bytes.insert(contentsOf: piece, at: Int.random(in: 0...bytes.count, using: &random))
        default:
            if !bytes.isEmpty { bytes[position(bytes)] = [0, 0xFF, 0x7F, 0x80].randomElement(using: &random)! }
        }
    }
}

/// Iterations are multiplied by `SLUICE_FUZZ_SCALE` (default 1, what CI runs in seconds); a longer
/// local run: `SLUICE_FUZZ_SCALE=50 swift test --filter FuzzTests`.
public let fuzzScale = max(1, Int(ProcessInfo.processInfo.environment["SLUICE_FUZZ_SCALE"] ?? "") ?? 1)

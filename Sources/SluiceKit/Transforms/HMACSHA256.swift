import CSluiceSupport

/// HMAC-SHA256 (RFC 2104, FIPS 180-4) for the `hash` mask, checked against the RFC 4231 test
/// vectors. The key's inner and outer pads are hashed once (here); each value then costs only its
/// own blocks and the outer one, in libcrypto's SHA-256 (`sluice_hmac_sha256`).
public struct HMACSHA256: Sendable {
    /// The hash states after the key's inner and outer pads (one block each), so a message costs
    /// only its own blocks and the outer one.
    private let inner: SIMD8<UInt32>
    private let outer: SIMD8<UInt32>

    public init(key: [UInt8]) {
        var block = key.count > 64 ? SHA256.digest(key) : key
        block += [UInt8](repeating: 0, count: 64 - block.count)
        var inner = SHA256.initialState
        var outer = SHA256.initialState
        block.map { $0 ^ 0x36 }.withUnsafeBytes { SHA256.compress(&inner, $0.baseAddress!) }
        block.map { $0 ^ 0x5c }.withUnsafeBytes { SHA256.compress(&outer, $0.baseAddress!) }
        self.inner = inner
        self.outer = outer
    }

    public func authenticate<Bytes: Collection>(_ message: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        var out = [UInt8](repeating: 0, count: 32)
        let bytes = Array(message)
        bytes.withUnsafeBytes { raw in out.withUnsafeMutableBytes { mac($0.baseAddress!, of: raw) } }
        return out
    }

    /// The MAC in lowercase hexadecimal.
    public func hex<Bytes: Collection>(_ message: Bytes) -> String where Bytes.Element == UInt8 {
        var out = [UInt8](repeating: 0, count: 64)
        Array(message).withUnsafeBytes { raw in out.withUnsafeMutableBytes { writeHex(of: raw, to: $0.baseAddress!) } }
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes the MAC of `message` in lowercase hexadecimal (64 bytes) at `out`: the mask's hot path,
    /// without allocating.
    public func writeHex(of message: UnsafeRawBufferPointer, to out: UnsafeMutableRawPointer) {
        withUnsafeBytes(of: inner) { inner in
            withUnsafeBytes(of: outer) { outer in
                sluice_hmac_sha256_hex(inner.baseAddress!.assumingMemoryBound(to: UInt32.self),
                                       outer.baseAddress!.assumingMemoryBound(to: UInt32.self),
                                       message.baseAddress, message.count, out.assumingMemoryBound(to: UInt8.self))
            }
        }
    }

    /// Writes the 32-byte MAC of `message` to `out`.
    private func mac(_ out: UnsafeMutableRawPointer, of message: UnsafeRawBufferPointer) {
        withUnsafeBytes(of: inner) { inner in
            withUnsafeBytes(of: outer) { outer in
                sluice_hmac_sha256(inner.baseAddress!.assumingMemoryBound(to: UInt32.self),
                                   outer.baseAddress!.assumingMemoryBound(to: UInt32.self),
                                   message.baseAddress, message.count, out.assumingMemoryBound(to: UInt8.self))
            }
        }
    }

    /// The same MAC in Swift alone (the reference the C path is tested against).
    func swiftMAC(_ message: [UInt8]) -> [UInt8] {
        var state = inner
        var out = [UInt8](repeating: 0, count: 32)
        message.withUnsafeBytes { SHA256.finish(&state, $0, priorBytes: 64) }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { digest in
            SHA256.store(state, UnsafeMutableRawPointer(digest.baseAddress!))
            var outerState = outer
            SHA256.finish(&outerState, UnsafeRawBufferPointer(digest), priorBytes: 64)
            out.withUnsafeMutableBytes { SHA256.store(outerState, $0.baseAddress!) }
        }
        return out
    }
}

/// SHA-256, streaming.
public struct SHA256: Sendable {
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    static let initialState = SIMD8<UInt32>(0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19)

    private var state = initialState
    private var buffer: [UInt8] = []
    private var length: UInt64 = 0

    public init() { buffer.reserveCapacity(64) }

    public static func digest<Bytes: Collection>(_ message: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        var hash = SHA256()
        hash.update(message)
        return hash.finish()
    }

    public mutating func update<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        length &+= UInt64(bytes.count)
        buffer.append(contentsOf: bytes)
        guard buffer.count >= 64 else { return }
        let blocks = buffer.count / 64
        buffer.withUnsafeBytes { raw in
            for block in 0..<blocks { Self.compress(&state, raw.baseAddress! + 64 * block) }
        }
        buffer.removeFirst(blocks * 64)
    }

    public mutating func finish() -> [UInt8] {
        var state = self.state
        buffer.withUnsafeBytes { Self.finish(&state, $0, priorBytes: length - UInt64(buffer.count)) }
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBytes { Self.store(state, $0.baseAddress!) }
        return out
    }

    /// Hashes the last `message` bytes (after `priorBytes` already compressed into `state`) and the padding.
    static func finish(_ state: inout SIMD8<UInt32>, _ message: UnsafeRawBufferPointer, priorBytes: UInt64) {
        let whole = message.count / 64
        for block in 0..<whole { compress(&state, message.baseAddress! + 64 * block) }
        let rest = message.count - whole * 64
        let bits = (priorBytes &+ UInt64(message.count)) &* 8
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { tail in
            let tail = UnsafeMutableRawBufferPointer(tail)
            tail.initializeMemory(as: UInt8.self, repeating: 0)
            if rest > 0 { tail.baseAddress!.copyMemory(from: message.baseAddress! + whole * 64, byteCount: rest) }
            tail[rest] = 0x80
            let end = rest + 1 > 56 ? 128 : 64
            for index in 0..<8 { tail[end - 1 - index] = UInt8(truncatingIfNeeded: bits >> UInt64(8 * index)) }
            compress(&state, tail.baseAddress!)
            if end == 128 { compress(&state, tail.baseAddress! + 64) }
        }
    }

    /// The state as the 32-byte big-endian digest.
    static func store(_ state: SIMD8<UInt32>, _ out: UnsafeMutableRawPointer) {
        for index in 0..<8 { out.storeBytes(of: state[index].bigEndian, toByteOffset: 4 * index, as: UInt32.self) }
    }

    /// One 64-byte block.
    static func compress(_ state: inout SIMD8<UInt32>, _ block: UnsafeRawPointer) {
        k.withUnsafeBufferPointer { k in
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
                for i in 0..<16 {
                    w[i] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                }
                for i in 16..<64 {
                    let s0 = rotate(w[i - 15], 7) ^ rotate(w[i - 15], 18) ^ (w[i - 15] >> 3)
                    let s1 = rotate(w[i - 2], 17) ^ rotate(w[i - 2], 19) ^ (w[i - 2] >> 10)
                    w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
                }
                var (a, b, c, d, e, f, g, h) = (state[0], state[1], state[2], state[3], state[4], state[5], state[6], state[7])
                for i in 0..<64 {
                    let s1 = rotate(e, 6) ^ rotate(e, 11) ^ rotate(e, 25)
                    let choice = (e & f) ^ (~e & g)
                    let t1 = h &+ s1 &+ choice &+ k[i] &+ w[i]
                    let s0 = rotate(a, 2) ^ rotate(a, 13) ^ rotate(a, 22)
                    let majority = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ majority
                    (h, g, f, e, d, c, b, a) = (g, f, e, d &+ t1, c, b, a, t1 &+ t2)
                }
                state &+= SIMD8(a, b, c, d, e, f, g, h)
            }
        }
    }

    @inline(__always)
    private static func rotate(_ value: UInt32, _ count: UInt32) -> UInt32 { value >> count | value << (32 - count) }
}

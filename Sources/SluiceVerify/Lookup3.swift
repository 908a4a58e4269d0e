/// Bob Jenkins' lookup3 hash as PostgreSQL's `hash_bytes_extended` computes it on a little-endian
/// machine with seed 0 — what `hashtextextended(text, 0)` returns (as a signed bigint) — so Sluice
/// digests SQLite rows exactly as the server digests PostgreSQL rows. Compares rows; protects nothing.
enum Lookup3 {
    @inline(__always) private static func rotate(_ x: UInt32, _ k: UInt32) -> UInt32 { x << k | x >> (32 - k) }

    @inline(__always) private static func mix(_ a: inout UInt32, _ b: inout UInt32, _ c: inout UInt32) {
        a &-= c; a ^= rotate(c, 4); c &+= b
        b &-= a; b ^= rotate(a, 6); a &+= c
        c &-= b; c ^= rotate(b, 8); b &+= a
        a &-= c; a ^= rotate(c, 16); c &+= b
        b &-= a; b ^= rotate(a, 19); a &+= c
        c &-= b; c ^= rotate(b, 4); b &+= a
    }

    @inline(__always) private static func final(_ a: inout UInt32, _ b: inout UInt32, _ c: inout UInt32) {
        c ^= b; c &-= rotate(b, 14)
        a ^= c; a &-= rotate(c, 11)
        b ^= a; b &-= rotate(a, 25)
        c ^= b; c &-= rotate(b, 16)
        a ^= c; a &-= rotate(c, 4)
        b ^= a; b &-= rotate(a, 14)
        c ^= b; c &-= rotate(b, 24)
    }

    /// Little-endian word of up to four bytes from `offset` (missing bytes are zero).
    @inline(__always) private static func word(_ bytes: UnsafeRawBufferPointer, _ offset: Int, _ count: Int = 4) -> UInt32 {
        var value: UInt32 = 0
        for index in 0..<count { value |= UInt32(bytes[offset + index]) << UInt32(8 * index) }
        return value
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var a = 0x9e37_79b9 &+ UInt32(truncatingIfNeeded: bytes.count) &+ 3_923_095
        var b = a, c = a
        var offset = 0
        var remaining = bytes.count
        while remaining >= 12 {
            a &+= bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian
            b &+= bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self).littleEndian
            c &+= bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self).littleEndian
            mix(&a, &b, &c)
            offset += 12
            remaining -= 12
        }
        // The last 11 bytes; the lowest byte of c is left for the length, so c takes bytes 8–10 from bit 8.
        if remaining > 8 { c &+= word(bytes, offset + 8, remaining - 8) << 8 }
        if remaining > 4 { b &+= word(bytes, offset + 4, min(4, remaining - 4)) }
        if remaining > 0 { a &+= word(bytes, offset, min(4, remaining)) }
        final(&a, &b, &c)
        return UInt64(b) << 32 | UInt64(c)
    }
}

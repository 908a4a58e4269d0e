import CSQLite

/// Bytes bound to a statement with `SQLITE_STATIC`: SQLite reads them in place until the statement
/// runs, instead of copying each text value into an allocation of its own (a malloc, a copy and a
/// free per value under SQLite's memory mutex). The owner binds, runs the statement (which resets it
/// and clears its bindings), then calls ``reset()`` before binding again.
public final class SQLiteBindArena {
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0

    public init(capacity: Int = 1 << 16) {
        self.capacity = capacity
        base = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
    }

    deinit { base.deallocate() }

    /// Forgets every value: only once no statement holds a binding into the arena.
    public func reset() { used = 0 }

    /// Room for `count` bytes, or nil when the arena is full (the caller binds a copy instead).
    func reserve(_ count: Int) -> UnsafeMutableRawPointer? {
        guard used + count <= capacity else { return nil }
        defer { used += count }
        return base + used
    }
}

extension SQLiteStatement {
    /// Binds UTF-8 text copied into `arena` (valid until the arena is reset).
    public func bind(_ index: Int, text bytes: UnsafeRawBufferPointer, in arena: SQLiteBindArena) {
        guard bytes.count > 0, let source = bytes.baseAddress, let room = arena.reserve(bytes.count) else {
            bind(index, text: bytes)
            return
        }
        room.copyMemory(from: source, byteCount: bytes.count)
        sqlite3_bind_text(statement, Int32(index), room.assumingMemoryBound(to: CChar.self), Int32(bytes.count), nil)
    }

    public func bind(_ index: Int, text value: String, in arena: SQLiteBindArena) {
        var value = value
        value.withUTF8 { bind(index, text: UnsafeRawBufferPointer($0), in: arena) }
    }
}

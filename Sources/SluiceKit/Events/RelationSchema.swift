/// A captured table's shape: what a sink needs to create and address the target table.
///
/// Every transaction in a topic carries the schema of each table it touches before the first
/// change to it, so a reader starting at any transaction boundary knows every table it meets.
public struct RelationSchema: Sendable, Equatable {
    public struct Column: Sendable, Equatable {
        public var name: String
        public var typeOID: UInt32
        public var typeModifier: Int32
        /// The type as PostgreSQL's `format_type` prints it, e.g. `numeric(10,2)`, `text[]`, `public.mood`.
        public var typeName: String
        /// Part of the primary key.
        public var isPrimaryKey: Bool
        /// Part of the replica identity: what the source sends as the old key of updates and deletes.
        public var isReplicaIdentity: Bool
        /// The value rows that existed before this column was added take (text form), when the source
        /// knows it: `ADD COLUMN … DEFAULT` fills existing rows without logging a change for each.
        public var existingRowsValue: String?
        /// Declared NOT NULL at the source (false in topics written before Sluice recorded it).
        public var isNotNull: Bool
        /// The enum the column's type is (or, for an array column, its elements are), with its labels.
        public var enumType: EnumType?

        public init(name: String, typeOID: UInt32, typeModifier: Int32, typeName: String,
                    isPrimaryKey: Bool, isReplicaIdentity: Bool, existingRowsValue: String? = nil,
                    isNotNull: Bool = false, enumType: EnumType? = nil) {
            self.name = name
            self.typeOID = typeOID
            self.typeModifier = typeModifier
            self.typeName = typeName
            self.isPrimaryKey = isPrimaryKey
            self.isReplicaIdentity = isReplicaIdentity
            self.existingRowsValue = existingRowsValue
            self.isNotNull = isNotNull
            self.enumType = enumType
        }

        /// The broad family of the type, for targets with fewer types than PostgreSQL.
        public var typeClass: TypeClass { TypeClass(oid: typeOID) }
    }

    /// A user-defined enum type: a target that lacks it can create it (`CREATE TYPE … AS ENUM`).
    public struct EnumType: Sendable, Equatable {
        public var schema: String
        public var name: String
        /// In sort order; a value the source used but its catalog did not list (renamed since) comes last.
        public var labels: [String]

        public init(schema: String, name: String, labels: [String]) {
            self.schema = schema
            self.name = name
            self.labels = labels
        }
    }

    public enum ReplicaIdentity: UInt8, Sendable {
        case `default` = 100  // 'd'
        case nothing = 110    // 'n'
        case full = 102       // 'f'
        case index = 105      // 'i'
    }

    /// The source's identifier for the table (its OID for PostgreSQL).
    public var id: UInt32
    public var schema: String
    public var table: String
    public var replicaIdentity: ReplicaIdentity
    public var columns: [Column]

    public init(id: UInt32, schema: String, table: String, replicaIdentity: ReplicaIdentity, columns: [Column]) {
        self.id = id
        self.schema = schema
        self.table = table
        self.replicaIdentity = replicaIdentity
        self.columns = columns
    }

    /// `schema.table`.
    public var qualifiedName: String { "\(schema).\(table)" }

    /// Indices of the primary-key columns; empty for a keyless table.
    public var primaryKey: [Int] { columns.indices.filter { columns[$0].isPrimaryKey } }

    /// Indices of the columns that identify a row: the primary key, else the replica identity
    /// (every column under REPLICA IDENTITY FULL).
    public var identityColumns: [Int] {
        let key = primaryKey
        if !key.isEmpty { return key }
        if replicaIdentity == .full { return Array(columns.indices) }
        return columns.indices.filter { columns[$0].isReplicaIdentity }
    }
}

/// How a PostgreSQL type maps onto targets with a handful of storage classes.
public enum TypeClass: Sendable, Equatable {
    case integer, float, numeric, boolean, bytes, json, text

    public init(oid: UInt32) {
        switch oid {
        case 20, 21, 23, 26, 28: self = .integer      // int8, int2, int4, oid, xid
        case 700, 701: self = .float                   // float4, float8
        case 1700: self = .numeric
        case 16: self = .boolean
        case 17: self = .bytes
        case 114, 3802: self = .json                   // json, jsonb
        default: self = .text
        }
    }
}

import Foundation
import Logging
import SluiceKit
import SluiceWire

/// Copies the existing rows of the captured tables, as of the slot's exported snapshot, into the
/// topic as one transaction of `read` changes.
///
/// One transaction, because a crash in the middle then leaves nothing a sink could have applied:
/// recovery drops the unfinished transaction and the next run takes the snapshot again.
struct InitialSnapshot {
    let source: PostgresSource
    let sql: PGConnection
    let writer: TransactionWriter
    let context: SourceContext

    func copy(tables: [TableName], snapshotName: String, consistentPoint: UInt64) throws {
        let logger = context.logger
        let started = Date()
        try source.wrap {
            try sql.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try sql.execute("SET TRANSACTION SNAPSHOT \(PGConnection.quoteLiteral(snapshotName))")
        }
        defer { _ = try? sql.execute("ROLLBACK") }
        let lsn = LSN(consistentPoint)
        let now = nowMicros()
        try writer.begin(BeginRecord(xid: 0, commitLSN: lsn, commitTime: now))
        var total = 0
        for table in tables {
            if context.isStopping() { throw ConnectorError.transient("stopped during the initial snapshot") }
            // The publication's row filter and column list, as the stream will carry the table.
            guard let copy = try source.wrap({ try source.copySource(of: table, on: sql) }) else { continue }
            let schema = copy.schema
            try writer.ensureRelation(schema)
            let columnCount = schema.columns.count
            var rows = 0
            try source.wrap {
                try sql.copyOut("COPY (SELECT \(copy.selectList) FROM \(table.sql)\(copy.filter)) TO STDOUT") { line in
                    try writer.change { body in
                        body.u8(ChangeOperation.read.rawValue)
                        body.u32(schema.id)
                        body.u64(lsn.rawValue)
                        try CopyText.appendTuple(line, columns: columnCount, into: &body)
                    }
                    rows += 1
                }
            }
            total += rows
            logger.info("snapshot copied table", metadata: ["table": "\(table)", "rows": "\(rows)"])
        }
        try writer.commit(commitLSN: lsn, endLSN: lsn, commitTime: now, keepEmpty: true)
        try writer.writer.flush()
        logger.info("initial snapshot done", metadata: [
            "tables": "\(tables.count)", "rows": "\(total)",
            "seconds": "\(String(format: "%.1f", Date().timeIntervalSince(started)))",
        ])
    }
}

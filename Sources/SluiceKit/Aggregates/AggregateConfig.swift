import Foundation

extension AggregateDefinition {
    /// Reads a SQL sink's `aggregates:` key (absent: none). Errors name the entry's key, e.g.
    /// `sinks[0] (replica).aggregates[1].window.tumbling`, and say what is expected.
    public static func parseAll(_ config: ConnectorConfig) throws -> [AggregateDefinition] {
        guard let value = config.value("aggregates") else { return [] }
        let items: [ConfigValue]
        switch value {
        case let .null(line): throw config.noValue("aggregates", line: line)
        case let .list(list, _): items = list
        default: throw config.error("aggregates", "expected a list of aggregates ({table, from, group_by, window, measures})", line: value.line)
        }
        var definitions: [AggregateDefinition] = []
        for (index, item) in items.enumerated() {
            let definition = try parse(item, key: "aggregates[\(index)]", config: config)
            if definitions.contains(where: { $0.table == definition.table }) {
                throw config.error("aggregates[\(index)].table", "'\(definition.table)' is the table of an earlier aggregate", line: item.line)
            }
            // The sink mirrors `from` into that very table, and keeps its positions in the other two.
            if let owner = definition.table == definition.from ? "the table the sink mirrors \(definition.from) into"
                : ["sluice_offsets", "sluice_aggregates"].contains(definition.table.table) && definition.table.schema == "public"
                ? "the sink's own table" : nil {
                throw config.error("aggregates[\(index)].table", "'\(definition.table)' is \(owner); name the aggregate's table otherwise",
                                   line: item.line)
            }
            definitions.append(definition)
        }
        return definitions
    }

    static func parse(_ item: ConfigValue, key: String, config: ConnectorConfig) throws -> AggregateDefinition {
        guard case let .map(entries, line) = item else {
            throw config.error(key, "expected a mapping {table, from, group_by, window, measures}", line: item.line)
        }
        let known = ["table", "from", "where", "group_by", "window", "measures", "retain"]
        for entry in entries where !known.contains(entry.key) {
            throw config.error("\(key).\(entry.key)", "unknown key for an aggregate (known: \(known.joined(separator: ", ")))", line: entry.value.line)
        }
        func entry(_ name: String) -> ConfigValue? { entries.first { $0.key == name }?.value }
        func scalar(_ name: String, required: Bool = true) throws -> String? {
            switch entry(name) {
            case nil, .null?:
                if required { throw config.error("\(key).\(name)", "is required", line: line) }
                return nil
            case let .scalar(text, _)?: return text
            case let other?: throw config.error("\(key).\(name)", "expected a value, found \(other.kindName)", line: other.line)
            }
        }
        func tableName(_ name: String) throws -> TableName {
            let text = try scalar(name)!
            do { return try TableName.parse(text) } catch {
                throw config.error("\(key).\(name)", "'\(text)' \(error)", line: entry(name)?.line)
            }
        }
        let table = try tableName("table")
        let from = try tableName("from")
        var predicate: Predicate?
        if let text = try scalar("where", required: false) {
            do { predicate = try Predicate(text) } catch {
                throw config.error("\(key).where", "'\(text)' does not parse: \(error)", line: entry("where")?.line)
            }
        }
        var groupBy: [String] = []
        switch entry("group_by") {
        case nil, .null?: break
        case let .scalar(text, _)?: groupBy = [text]
        case let .list(names, _)?:
            groupBy = try names.map { name in
                guard case let .scalar(text, _) = name else {
                    throw config.error("\(key).group_by", "expected a list of column names, found \(name.kindName)", line: name.line)
                }
                return text
            }
        case let other?: throw config.error("\(key).group_by", "expected a list of column names, found \(other.kindName)", line: other.line)
        }
        groupBy = try groupBy.map { text in
            guard let column = Measure.identifier(text) else {
                throw config.error("\(key).group_by", "'\(text)' is not a column name", line: entry("group_by")?.line)
            }
            return column
        }
        let window = try parseWindow(entry("window"), key: "\(key).window", line: line, config: config)
        guard case let .map(measureEntries, measuresLine)? = entry("measures"), !measureEntries.isEmpty else {
            throw config.error("\(key).measures", "expected a mapping of measures, e.g. {orders: \"count(*)\", revenue: \"sum(amount)\"}",
                               line: entry("measures")?.line ?? line)
        }
        var measures: [(name: String, measure: Measure)] = []
        for pair in measureEntries {
            guard case let .scalar(text, _) = pair.value, let measure = Measure(text) else {
                throw config.error("\(key).measures.\(pair.key)", "'\(pair.value.scalarText ?? pair.value.kindName)' is not a measure: "
                                   + "write count(*), count(col), sum(col), min(col), max(col) or avg(col)", line: pair.value.line)
            }
            if reservedColumns.contains(pair.key) || groupBy.contains(pair.key) || measures.contains(where: { $0.name == pair.key })
                || pair.key.hasPrefix("_sluice") {
                throw config.error("\(key).measures.\(pair.key)", "the name is taken (by window_start, window_end, a group column, "
                                   + "another measure or Sluice's _sluice_ columns)", line: pair.value.line)
            }
            measures.append((pair.key, measure))
        }
        _ = measuresLine
        if let clash = groupBy.first(where: { reservedColumns.contains($0) || $0.hasPrefix("_sluice") }) {
            throw config.error("\(key).group_by", "'\(clash)' is a column name the aggregate table uses itself", line: entry("group_by")?.line)
        }
        var retain: Int64?
        if let text = try scalar("retain", required: false) {
            guard let millis = parseDurationMillis(text), millis > 0 else {
                throw config.error("\(key).retain", "'\(text)' is not a duration such as 30d, 12h or 90m", line: entry("retain")?.line)
            }
            retain = Int64(millis) * 1000
        }
        return AggregateDefinition(table: table, from: from, predicate: predicate, groupBy: groupBy, window: window,
                                   measures: measures, retain: retain, key: "\(config.path).\(key)")
    }

    static func parseWindow(_ value: ConfigValue?, key: String, line: Int, config: ConnectorConfig) throws -> AggregateWindow {
        let shape = "{tumbling: 1m, time: created_at} or {hopping: 5m, every: 1m, time: commit_time}"
        guard case let .map(entries, windowLine)? = value else {
            throw config.error(key, "expected \(shape)", line: value?.line ?? line)
        }
        for entry in entries where !["tumbling", "hopping", "every", "time"].contains(entry.key) {
            throw config.error("\(key).\(entry.key)", "unknown key for a window (known: tumbling, hopping, every, time)", line: entry.value.line)
        }
        func duration(_ name: String) throws -> Int64? {
            guard let value = entries.first(where: { $0.key == name })?.value else { return nil }
            guard case let .scalar(text, _) = value, let millis = parseDurationMillis(text), millis > 0 else {
                throw config.error("\(key).\(name)", "'\(value.scalarText ?? value.kindName)' is not a positive duration such as 30s, 1m, 1h or 1d",
                                   line: value.line)
            }
            return Int64(millis) * 1000
        }
        let tumbling = try duration("tumbling")
        let hopping = try duration("hopping")
        let every = try duration("every")
        guard case let .scalar(timeText, _)? = entries.first(where: { $0.key == "time" })?.value,
              let column = Measure.identifier(timeText) else {
            throw config.error("\(key).time", "expected a timestamp, timestamptz or date column of the source table, or commit_time", line: windowLine)
        }
        let time: AggregateWindow.TimeSource = timeText == "commit_time" ? .commitTime : .column(column)
        switch (tumbling, hopping) {
        case let (size?, nil):
            if every != nil { throw config.error("\(key).every", "applies to hopping windows only", line: windowLine) }
            return AggregateWindow(size: size, every: size, time: time)
        case let (nil, size?):
            guard let every else { throw config.error("\(key).every", "a hopping window needs every: (how often a window starts)", line: windowLine) }
            guard every <= size else {
                throw config.error("\(key).every", "must not be longer than the window (hopping: \(size / 1000) ms)", line: windowLine)
            }
            return AggregateWindow(size: size, every: every, time: time)
        case (nil, nil): throw config.error(key, "needs tumbling: or hopping: — \(shape)", line: windowLine)
        case (_?, _?): throw config.error(key, "has both tumbling: and hopping:; choose one", line: windowLine)
        }
    }
}

extension ConfigValue {
    var scalarText: String? { if case let .scalar(text, _) = self { return text } else { return nil } }
}

import Metrics
import Prometheus

/// Every metric family Sluice publishes, with its help text (the `# HELP` line). Conventions:
/// `sluice_<source|sink|topic>_…`, labelled `source`, `sink`, `topic` (and `table`) by what they count;
/// counters end in `_total`, durations are histograms in seconds, sizes in bytes. docs/metrics.md
/// lists the same table; a test checks that every published family is in it.
public enum MetricFamilies {
    public static let help: [String: String] = [
        "sluice_source_events_total": "Change events a source appended to its topic (snapshot rows included).",
        "sluice_source_transactions_total": "Source transactions a source appended to its topic.",
        "sluice_source_retries_total": "Times a source failed and retried (connection lost, server restarted, disk full).",
        "sluice_source_retained_wal_bytes": "WAL the source's replication slot keeps on the database server.",
        "sluice_source_ignored_changes_total": "Changes of tables the source does not capture that reached it (logged once per table).",
        "sluice_topic_bytes_total": "Bytes appended to a topic.",
        "sluice_sink_events_total": "Change events a sink applied to its target.",
        "sluice_sink_transactions_total": "Source transactions a sink applied to its target.",
        "sluice_sink_retries_total": "Times a sink failed and retried (target unreachable or refusing).",
        "sluice_sink_lag_events": "Events committed to the topic that the sink has not applied yet.",
        "sluice_sink_lag_seconds": "Age of the oldest transaction the sink has not applied yet.",
        "sluice_sink_batch_duration_seconds": "Time a sink took to apply one batch (one target transaction).",
        "sluice_sink_commit_to_apply_seconds": "Time from a source transaction's commit to its apply at the target.",
        "sluice_sink_aggregate_late_rows_total": "Rows an aggregate skipped: their window was already dropped by retain: (one per row and window).",
    ]
}

/// The Prometheus factory with help texts: swift-prometheus's own factory registers families
/// without them.
struct HelpfulMetricsFactory: MetricsFactory {
    let inner: PrometheusMetricsFactory
    let registry: PrometheusCollectorRegistry

    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: MetricFamilies.help[label] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        dimensions.isEmpty ? registry.makeCounter(descriptor: descriptor(label))
                           : registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        dimensions.isEmpty ? registry.makeCounter(descriptor: descriptor(label))
                           : registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard !aggregate else { return inner.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate) }
        return dimensions.isEmpty ? registry.makeGauge(descriptor: descriptor(label))
                                  : registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        dimensions.isEmpty ? registry.makeGauge(descriptor: descriptor(label))
                           : registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        let buckets = inner.durationHistogramBuckets[label] ?? inner.defaultDurationHistogramBuckets
        return dimensions.isEmpty ? registry.makeDurationHistogram(descriptor: descriptor(label), buckets: buckets)
                                  : registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: buckets)
    }

    func destroyCounter(_ handler: any CounterHandler) { inner.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { inner.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { inner.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { inner.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { inner.destroyTimer(handler) }
}

import SluiceCLI
import SluiceConnectors
import SluiceKit

// Every built-in connector, plus ours; then the whole `sluice` command line.
var registry = ConnectorRegistry.builtin
registry.register(CounterSink.self)
SluiceMain.run(registry: registry)

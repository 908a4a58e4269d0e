import SluiceCLI
import SluiceKit

// A bad SLUICE_FAILPOINTS exits 2 here, before anything runs (docs/failpoints.md).
Failpoint.validateEnvironment()
SluiceMain.run()

import SluiceKit

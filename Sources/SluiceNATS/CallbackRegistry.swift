import Foundation

/// Boxes that libnats callbacks reach by number, not by pointer.
///
/// libnats runs connection and publish-ack callbacks on its own threads and may run one after the
/// handle that registered it is destroyed (a closed callback is posted by `natsConnection_Destroy`
/// itself). So a callback's closure is a number: it looks the box up here, and finds nothing once
/// the owner has gone — never a freed object.
final class CallbackRegistry<Box: AnyObject & Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var boxes: [Int: Box] = [:]
    private var nextID = 1

    func add(_ box: Box) -> UnsafeMutableRawPointer {
        lock.lock()
        defer { lock.unlock() }
        let id = nextID
        nextID += 1
        boxes[id] = box
        return UnsafeMutableRawPointer(bitPattern: id)!
    }

    func box(_ closure: UnsafeMutableRawPointer?) -> Box? {
        guard let closure else { return nil }
        lock.lock()
        defer { lock.unlock() }
        return boxes[Int(bitPattern: closure)]
    }

    func remove(_ closure: UnsafeMutableRawPointer) {
        lock.lock()
        defer { lock.unlock() }
        boxes[Int(bitPattern: closure)] = nil
    }
}

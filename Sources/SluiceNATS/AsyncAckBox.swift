internal import CNATS
import Foundation

/// The asynchronous publishes of one JetStream context: which are in flight (by libnats message
/// address, registered before the message is handed over) and the outcomes not yet taken.
/// libnats' reply thread writes, the owning thread reads; everything behind one lock.
final class AsyncAckBox: @unchecked Sendable {
    private struct Pending {
        var tag: UInt64
        var messageID: String?
    }

    private let lock = NSLock()
    private var pending: [UInt: Pending] = [:]
    private var completed: [AsyncPublishAck] = []
    private let handler: (@Sendable (AsyncPublishAck) -> Void)?

    init(handler: (@Sendable (AsyncPublishAck) -> Void)?) {
        self.handler = handler
    }

    func register(_ key: UInt, tag: UInt64, messageID: String?) {
        lock.lock()
        defer { lock.unlock() }
        pending[key] = Pending(tag: tag, messageID: messageID)
    }

    func unregister(_ key: UInt) {
        lock.lock()
        defer { lock.unlock() }
        pending[key] = nil
    }

    var pendingCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return pending.count
    }

    func take() -> [AsyncPublishAck] {
        lock.lock()
        defer { lock.unlock() }
        let taken = completed
        completed.removeAll(keepingCapacity: true)
        return taken
    }

    func complete(_ key: UInt, _ result: Result<PubAck, NATSError>) {
        lock.lock()
        guard let entry = pending.removeValue(forKey: key) else {
            lock.unlock()
            return
        }
        let ack = AsyncPublishAck(tag: entry.tag, messageID: entry.messageID, result: result)
        completed.append(ack)
        lock.unlock()
        handler?(ack)
    }
}

let asyncAckBoxes = CallbackRegistry<AsyncAckBox>()

/// libnats' ack handler: runs on its reply thread, owns (and destroys) the published message.
let onPublishAck: jsPubAckHandler = { _, message, ack, failure, closure in
    defer { natsMsg_Destroy(message) }
    guard let message, let box = asyncAckBoxes.box(closure) else { return }
    let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(message)))
    if let ack {
        box.complete(key, .success(PubAck(ack.pointee)))
    } else {
        let failure = failure?.pointee
        let status = failure?.Err ?? NATS_ERR
        let code = Int(failure?.ErrCode.rawValue ?? 0)
        let text = failure?.ErrText.map { String(cString: $0) } ?? String(cString: natsStatus_GetText(status))
        let subject = natsMsg_GetSubject(message).map { String(cString: $0) } ?? "?"
        box.complete(key, .failure(NATSError("publish to \(subject): \(text)", status: status,
                                             jetStreamCode: code == 0 ? nil : code)))
    }
}

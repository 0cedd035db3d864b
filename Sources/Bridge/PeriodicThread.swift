import Foundation

/// A thread that runs `body` every `interval` seconds until stopped (the checkpoint signer, the
/// manifest publisher). `stop` waits for the round in progress.
final class PeriodicThread: @unchecked Sendable {
    private let stopping = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    private var thread: Thread?

    func start(name: String, interval: Double, _ body: @escaping @Sendable () -> Void) {
        let t = Thread { [stopping, stopped] in
            while stopping.wait(timeout: .now() + interval) == .timedOut { body() }
            stopped.signal()
        }
        t.name = name
        thread = t
        t.start()
    }

    /// Returns false when it was not running.
    @discardableResult
    func stop() -> Bool {
        guard thread != nil else { return false }
        stopping.signal()
        stopped.wait()
        thread = nil
        return true
    }
}

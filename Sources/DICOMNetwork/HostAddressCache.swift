import Foundation

/// The addresses of configured host names (AE titles registered with `--host NAME`), resolved on
/// background threads and cached, so that an association check never waits on DNS for long and
/// never on a thread another peer needs.
///
/// - A numeric address is returned as is, without any lookup.
/// - A name seen before is answered from the cache at once; when its entry is older than `ttl`,
///   one background refresh starts (the old addresses are used meanwhile).
/// - A name never seen is resolved in the background; the caller waits at most `firstWait` for it
///   (nil after that: the check fails closed; a later association finds the answer cached).
public final class HostAddressCache: @unchecked Sendable {
    public static let shared = HostAddressCache()

    private struct Entry {
        var addresses: Set<String>
        var resolvedAt: Date
    }

    private let lock = NSCondition()
    private var entries: [String: Entry] = [:]
    private var inFlight: Set<String> = []
    public let ttl: TimeInterval
    public let firstWait: TimeInterval

    public init(ttl: TimeInterval = 60, firstWait: TimeInterval = 2) {
        self.ttl = ttl
        self.firstWait = firstWait
    }

    /// The addresses `host` resolves to (numeric strings), or nil when they are not known in time.
    public func addresses(of host: String) -> Set<String>? {
        if let numeric = Self.numeric(host) { return [numeric] }
        lock.lock()
        defer { lock.unlock() }
        if let e = entries[host] {
            if Date().timeIntervalSince(e.resolvedAt) > ttl { startResolving(host) }
            return e.addresses
        }
        startResolving(host)
        let deadline = Date().addingTimeInterval(firstWait)
        while entries[host] == nil {
            if !lock.wait(until: deadline) { break }
        }
        return entries[host]?.addresses
    }

    /// Called with the lock held.
    private func startResolving(_ host: String) {
        guard !inFlight.contains(host) else { return }
        inFlight.insert(host)
        let t = Thread { [self] in
            let found = Self.resolve(host)
            lock.lock()
            inFlight.remove(host)
            // A failed refresh keeps the previous answer; a failed first lookup is cached empty.
            if !found.isEmpty || entries[host] == nil { entries[host] = Entry(addresses: found, resolvedAt: Date()) }
            else { entries[host]?.resolvedAt = Date() }
            lock.broadcast()
            lock.unlock()
        }
        t.name = "dicom-host-resolver"
        t.start()
    }

    static func numeric(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICHOST
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(first) }
        return numericString(first.pointee)
    }

    static func resolve(_ host: String) -> Set<String> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var out = Set<String>()
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let s = numericString(ai.pointee) { out.insert(s) }
            p = ai.pointee.ai_next
        }
        return out
    }

    private static func numericString(_ ai: addrinfo) -> String? {
        var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(ai.ai_addr, ai.ai_addrlen, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
        return String(cString: buf)
    }
}

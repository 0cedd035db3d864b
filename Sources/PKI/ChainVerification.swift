import Foundation
import X509

/// Checks that a certificate chains to a CA and that the chain is valid now: signatures,
/// validity periods, basic and name constraints (swift-certificates' Verifier, RFC 5280 policy).
public enum ChainVerification {
    /// Verifies the first certificate of `leafPEM` (any further certificates there are offered as
    /// intermediates) against the CA certificate(s) in `caPEM`. Returns the validated chain, leaf
    /// first and the CA last; throws ``PKIError/untrusted(subject:reasons:)`` when there is none.
    public static func verifyChain(leafPEM: String, caPEM: String) async throws -> [Certificate] {
        let leafChain = try PEM.certificates(fromPEM: leafPEM, source: "the certificate")
        let roots = try PEM.certificates(fromPEM: caPEM, source: "the CA certificate")
        return try await verifyChain(leaf: leafChain[0], intermediates: Array(leafChain.dropFirst()), roots: roots)
    }

    public static func verifyChain(leaf: Certificate, intermediates: [Certificate] = [],
                                   roots: [Certificate]) async throws -> [Certificate] {
        var verifier = Verifier(rootCertificates: CertificateStore(roots)) { RFC5280Policy() }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        switch result {
        case .validCertificate(let chain):
            return Array(chain)
        case .couldNotValidate(let failures):
            var reasons: [String] = []
            for f in failures where !reasons.contains(f.policyFailureReason.description) {
                reasons.append(f.policyFailureReason.description)
            }
            if reasons.isEmpty {
                reasons.append("it is not signed by the given CA (no chain from \(leaf.issuer) to a CA certificate)")
            }
            throw PKIError.untrusted(subject: "\(leaf.subject)", reasons: reasons)
        }
    }

    /// ``verifyChain(leafPEM:caPEM:)`` for synchronous code (command-line tools): blocks the
    /// calling thread until it is done. Not for use from async code.
    @available(*, noasync, message: "use verifyChain(leafPEM:caPEM:) from async code")
    public static func verifyChainBlocking(leafPEM: String, caPEM: String) throws -> [Certificate] {
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do { box.set(.success(try await verifyChain(leafPEM: leafPEM, caPEM: caPEM))) }
            catch { box.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        return try box.get()
    }

    private final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var result: Result<[Certificate], any Error> = .failure(CancellationError())
        func set(_ r: Result<[Certificate], any Error>) { lock.lock(); result = r; lock.unlock() }
        func get() throws -> [Certificate] { lock.lock(); defer { lock.unlock() }; return try result.get() }
    }
}

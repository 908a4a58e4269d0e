import CCurl
import Foundation
import SluiceKit

/// How the HTTP sink trusts its receiver and proves who it is: `ca_file`, `client_cert`, `client_key`
/// (paths already resolved and checked to be readable).
struct HTTPTLSSettings {
    var caFile: String?
    var clientCertificate: String?
    var clientKey: String?
}

/// One attempt's outcome: the status and (the start of) the body of an answer, or why there was none.
struct HTTPAnswer {
    var status: Int?
    var body = ""
    var failure: String?
    /// Nothing listens there: nothing was delivered.
    var refused = false
    /// A certificate problem: a configuration to fix, not an outage to wait out.
    var tlsRefused = false
}

/// POSTs files to one URL with libcurl: Foundation's URLSession on Linux offers no CA file and no
/// client certificate. One handle per sink, so its connection is kept alive between batches.
/// Not thread-safe: the sink calls it from its own thread only.
final class HTTPTransport {
    /// Of an answer's body, what is kept for messages; a longer body is read and dropped, up to
    /// `maxBodyBytes`, past which the attempt ends (a receiver that never stops answering).
    static let keptBodyBytes = 4096
    static let maxBodyBytes = 1 << 20

    private static let initialized: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    let url: String
    let tls: HTTPTLSSettings
    private let handle: UnsafeMutableRawPointer

    init(url: String, tls: HTTPTLSSettings) throws {
        guard Self.initialized, let handle = curl_easy_init() else {
            throw ConnectorError.fatal("libcurl could not be initialized")
        }
        self.url = url
        self.tls = tls
        self.handle = handle
    }

    deinit { curl_easy_cleanup(handle) }

    /// State shared with libcurl's callbacks for one attempt.
    private final class Attempt {
        var body: [UInt8] = []
        var received = 0
        var tooLong = false
        var gaveUp = false
        let shouldGiveUp: () -> Bool
        init(shouldGiveUp: @escaping () -> Bool) { self.shouldGiveUp = shouldGiveUp }
    }

    /// POSTs the file at `bodyPath` with `headers`; an attempt ends after `timeoutSeconds`, or about a
    /// second after `shouldGiveUp` turns true.
    func post(bodyPath: String, headers: [(String, String)], timeoutSeconds: Double,
              shouldGiveUp: @escaping () -> Bool) -> HTTPAnswer {
        guard let file = fopen(bodyPath, "rb") else {
            return HTTPAnswer(failure: "cannot read the spooled batch \(bodyPath): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var info = stat()
        fstat(fileno(file), &info)

        var list: UnsafeMutablePointer<curl_slist>?
        // "Expect:" turns off curl's 100-continue wait, which a receiver may never answer.
        for line in headers.map({ "\($0.0): \($0.1)" }) + ["Expect:"] { list = curl_slist_append(list, line) }
        defer { curl_slist_free_all(list) }

        let attempt = Attempt(shouldGiveUp: shouldGiveUp)
        let context = Unmanaged.passUnretained(attempt).toOpaque()
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { buffer in
            prepare(timeoutSeconds: timeoutSeconds, errorBuffer: buffer.baseAddress!)
            sluice_curl_set_long(handle, CURLOPT_POST, 1)
            sluice_curl_set_pointer(handle, CURLOPT_READDATA, UnsafeMutableRawPointer(file))
            sluice_curl_set_size(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(info.st_size))
            sluice_curl_set_headers(handle, list)
            sluice_curl_set_pointer(handle, CURLOPT_WRITEDATA, context)
            sluice_curl_set_write_function(handle) { data, size, count, context in
                let attempt = Unmanaged<Attempt>.fromOpaque(context!).takeUnretainedValue()
                let length = size * count
                attempt.received += length
                if attempt.received > HTTPTransport.maxBodyBytes {
                    attempt.tooLong = true
                    return 0
                }
                let keep = min(length, HTTPTransport.keptBodyBytes - attempt.body.count)
                if keep > 0, let data {
                    data.withMemoryRebound(to: UInt8.self, capacity: keep) { attempt.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: keep)) }
                }
                return length
            }
            sluice_curl_set_long(handle, CURLOPT_NOPROGRESS, 0)
            sluice_curl_set_pointer(handle, CURLOPT_XFERINFODATA, context)
            sluice_curl_set_progress_function(handle) { context, _, _, _, _ in
                let attempt = Unmanaged<Attempt>.fromOpaque(context!).takeUnretainedValue()
                if attempt.shouldGiveUp() { attempt.gaveUp = true; return 1 }
                return 0
            }
            let code = curl_easy_perform(handle)
            sluice_curl_set_headers(handle, nil)
            sluice_curl_set_pointer(handle, CURLOPT_ERRORBUFFER, nil)
            return code
        }
        let detail = String(cString: errorBuffer)
        if code == CURLE_OK {
            return HTTPAnswer(status: sluice_curl_response_code(handle), body: String(decoding: attempt.body, as: UTF8.self))
        }
        if attempt.gaveUp { return HTTPAnswer(failure: "abandoned: the process is stopping") }
        if attempt.tooLong {
            return HTTPAnswer(status: sluice_curl_response_code(handle), body: String(decoding: attempt.body, as: UTF8.self),
                              failure: "the answer's body exceeds \(Self.maxBodyBytes / 1024) KiB, the limit of what is read")
        }
        return describe(code, detail, timeoutSeconds: timeoutSeconds)
    }

    /// Connects and, for https, completes the TLS handshake (verifying the receiver, presenting the
    /// client certificate); sends no request. Nil when that worked.
    func handshake(timeoutSeconds: Double) -> HTTPAnswer? {
        guard let probe = curl_easy_init() else { return HTTPAnswer(failure: "libcurl could not be initialized") }
        defer { curl_easy_cleanup(probe) }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { buffer in
            prepare(probe, timeoutSeconds: timeoutSeconds, errorBuffer: buffer.baseAddress!)
            sluice_curl_set_long(probe, CURLOPT_CONNECT_ONLY, 1)
            return curl_easy_perform(probe)
        }
        return code == CURLE_OK ? nil : describe(code, String(cString: errorBuffer), timeoutSeconds: timeoutSeconds)
    }

    private func prepare(_ target: UnsafeMutableRawPointer? = nil, timeoutSeconds: Double, errorBuffer: UnsafeMutablePointer<CChar>) {
        let handle = target ?? self.handle
        sluice_curl_set_string(handle, CURLOPT_URL, url)
        // Several threads use libcurl: no SIGALRM for timeouts.
        sluice_curl_set_long(handle, CURLOPT_NOSIGNAL, 1)
        sluice_curl_set_long(handle, CURLOPT_TIMEOUT_MS, max(1, Int(timeoutSeconds * 1000)))
        sluice_curl_set_long(handle, CURLOPT_CONNECTTIMEOUT_MS, max(1, Int(timeoutSeconds * 1000)))
        sluice_curl_set_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
        sluice_curl_set_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)
        if let caFile = tls.caFile { sluice_curl_set_string(handle, CURLOPT_CAINFO, caFile) }
        if let certificate = tls.clientCertificate {
            sluice_curl_set_string(handle, CURLOPT_SSLCERT, certificate)
            sluice_curl_set_string(handle, CURLOPT_SSLCERTTYPE, "PEM")
        }
        if let key = tls.clientKey {
            sluice_curl_set_string(handle, CURLOPT_SSLKEY, key)
            sluice_curl_set_string(handle, CURLOPT_SSLKEYTYPE, "PEM")
        }
    }

    /// libcurl's failures in plain words, naming the key that fixes a certificate problem.
    func describe(_ code: CURLcode, _ detail: String, timeoutSeconds: Double) -> HTTPAnswer {
        let said = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        let lower = said.lowercased()
        let trust = tls.caFile.map { "the CA of ca_file \($0)" } ?? "a CA this system trusts (or set ca_file)"
        if lower.contains("certificate required") || lower.contains("alert bad certificate")
            || lower.contains("alert unknown ca") || lower.contains("alert handshake failure") && tls.clientCertificate == nil {
            let fix = tls.clientCertificate == nil
                ? "the receiver requires a client certificate: set client_cert and client_key"
                : "the receiver refused the client certificate of client_cert \(tls.clientCertificate!): it must be signed by a CA the receiver trusts"
            return HTTPAnswer(failure: "TLS failed: \(fix) (\(said))", tlsRefused: true)
        }
        switch code {
        case CURLE_COULDNT_CONNECT:
            return HTTPAnswer(failure: "connection refused: nothing listens there", refused: true)
        case CURLE_OPERATION_TIMEDOUT:
            return HTTPAnswer(failure: "no answer within \(timeoutSeconds.formatted()) s (the `timeout` key)")
        case CURLE_COULDNT_RESOLVE_HOST:
            return HTTPAnswer(failure: "host name not found (\(said))")
        case CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_SEND_ERROR:
            return HTTPAnswer(failure: "the connection was closed before an answer (\(said))")
        case CURLE_PEER_FAILED_VERIFICATION:
            let why = lower.contains("subject name") || lower.contains("does not match")
                ? "the receiver's certificate was issued for another host name than the url's"
                : "the receiver's certificate is not signed by \(trust)"
            return HTTPAnswer(failure: "TLS failed: \(why) (\(said))", tlsRefused: true)
        case CURLE_SSL_CACERT_BADFILE:
            return HTTPAnswer(failure: "TLS failed: ca_file \(tls.caFile ?? "-") holds no PEM certificate libcurl can use (\(said))",
                              tlsRefused: true)
        case CURLE_SSL_CERTPROBLEM:
            return HTTPAnswer(failure: """
                TLS failed: client_cert \(tls.clientCertificate ?? "-") and client_key \(tls.clientKey ?? "-") are not a PEM \
                certificate and its private key (\(said))
                """, tlsRefused: true)
        case CURLE_SSL_CONNECT_ERROR:
            // A reset during the handshake is an outage; a refusal of the peer's certificate is not.
            let refused = ["certificate", "alert", "wrong version number"].contains { lower.contains($0) }
            return HTTPAnswer(failure: "TLS failed: \(said)", tlsRefused: refused)
        default:
            return HTTPAnswer(failure: "\(said) (libcurl error \(code.rawValue))")
        }
    }
}

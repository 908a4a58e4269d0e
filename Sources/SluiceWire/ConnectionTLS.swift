import CLibPQ
import Foundation

/// How a connection is protected, as `check` reports it: the TLS version libpq negotiated and
/// whether the server's certificate was verified (sslmode verify-ca: signed by the CA in
/// `sslrootcert`; verify-full: also issued for the host name in the URL).
public struct ConnectionTLS: Sendable {
    public let inUse: Bool
    /// "TLSv1.3" (PQsslAttribute "protocol").
    public let version: String?
    public let cipher: String?
    /// The sslmode in effect (libpq's default is prefer).
    public let sslmode: String

    public var certificateVerified: Bool { inUse && (sslmode == "verify-ca" || sslmode == "verify-full") }

    public var summary: String {
        guard inUse else { return "not encrypted (sslmode=\(sslmode)): passwords and rows cross the network in clear" }
        let verification = switch sslmode {
        case "verify-full": "server certificate verified, host name checked (verify-full)"
        case "verify-ca": "server certificate verified, host name not checked (verify-ca)"
        default: "server certificate NOT verified (sslmode=\(sslmode))"
        }
        return "TLS \(version ?? "?")\(cipher.map { " (\($0))" } ?? ""), \(verification)"
    }
}

extension PGConnection {
    public var tls: ConnectionTLS {
        let inUse = PQsslInUse(conn) == 1
        func attribute(_ name: String) -> String? { PQsslAttribute(conn, name).map { String(cString: $0) } }
        var sslmode = "prefer"
        if let options = PQconninfo(conn) {
            defer { PQconninfoFree(options) }
            sslmode = conninfoValue(options, "sslmode") ?? sslmode
        }
        return ConnectionTLS(inUse: inUse, version: inUse ? attribute("protocol") : nil,
                             cipher: inUse ? attribute("cipher") : nil, sslmode: sslmode)
    }
}

/// A warning when `url` reaches a host other than this machine without `sslmode=verify-full`:
/// the connection may then be read or answered by someone else.
public func connectionTLSWarning(_ url: String) -> String? {
    var error: UnsafeMutablePointer<CChar>?
    guard let options = PQconninfoParse(url, &error) else {
        error.map { PQfreemem($0) }
        return nil
    }
    defer { PQconninfoFree(options) }
    let hosts = (conninfoValue(options, "host") ?? "").split(separator: ",").map(String.init)
        + (conninfoValue(options, "hostaddr") ?? "").split(separator: ",").map(String.init)
    let remote = hosts.filter { !isLoopback($0) }
    let sslmode = conninfoValue(options, "sslmode") ?? "prefer"
    guard !remote.isEmpty, sslmode != "verify-full" else { return nil }
    return "\(remote.joined(separator: ", ")) is not this machine and the URL has sslmode=\(sslmode)"
        + (conninfoValue(options, "sslmode") == nil ? " (libpq's default)" : "")
        + ": the connection may be unencrypted or reach an impostor"
}

func isLoopback(_ host: String) -> Bool {
    host.isEmpty || host.hasPrefix("/") || host.hasPrefix("@") || host == "localhost" || host == "::1"
        || host == "[::1]" || host.hasPrefix("127.")
}

/// libpq's TLS failures explained, each with its fix; nil for any other message.
public func tlsProblem(_ message: String) -> String? {
    let rules: [(String, String)] = [
        ("does not match host name",
         "the server's certificate was issued for another host name: connect with a name the certificate lists, or reissue it"),
        ("certificate verify failed",
         "the server's certificate is not signed by the CA in sslrootcert (wrong CA, or an expired or revoked certificate): point sslrootcert at the CA that signed it"),
        ("root certificate file",
         "the CA file to verify the server with is missing (sslrootcert, by default ~/.postgresql/root.crt): set sslrootcert to the CA's PEM file, or sslrootcert=system"),
        ("could not read root certificate file", "sslrootcert is not a readable PEM file"),
        ("certificate present, but not private key file", "sslcert is set but the sslkey file is missing: give both"),
        ("has group or world access", "the sslkey file may be read by others: chmod 600 it (libpq refuses it otherwise)"),
        ("could not open certificate file", "sslcert names a file that is missing or unreadable"),
        ("could not read certificate file", "sslcert is not a readable PEM certificate"),
        ("could not load private key file", "sslkey is not a readable PEM private key"),
        ("certificate revocation list", "sslcrl names a file that is missing or not a PEM revocation list"),
        ("server does not support SSL", "the server does not offer TLS (ssl = off): turn ssl on at the server, or lower sslmode"),
        ("no encryption", "the server accepts this connection only over TLS (a hostssl line in pg_hba.conf): use sslmode=verify-full"),
    ]
    return rules.first { message.contains($0.0) }?.1
}

func conninfoValue(_ options: UnsafeMutablePointer<PQconninfoOption>, _ keyword: String) -> String? {
    var option = options
    while let key = option.pointee.keyword {
        if String(cString: key) == keyword { return option.pointee.val.map { String(cString: $0) } }
        option += 1
    }
    return nil
}

/// URL parameters naming files libpq reads, checked before connecting: a missing one is a bad URL.
func tlsParameterProblem(_ options: UnsafeMutablePointer<PQconninfoOption>) -> String? {
    if let mode = conninfoValue(options, "sslmode"),
       !["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].contains(mode) {
        return "has sslmode=\(mode); use one of disable, allow, prefer, require, verify-ca, verify-full"
    }
    for key in ["sslrootcert", "sslcert", "sslkey", "sslcrl"] {
        guard let path = conninfoValue(options, key), !path.isEmpty, !(key == "sslrootcert" && path == "system") else { continue }
        let expanded = path.hasPrefix("~/") ? NSHomeDirectory() + path.dropFirst(1) : path
        guard FileManager.default.isReadableFile(atPath: expanded) else {
            return "has \(key)=\(path), which \(FileManager.default.fileExists(atPath: expanded) ? "cannot be read" : "does not exist")"
        }
    }
    return nil
}

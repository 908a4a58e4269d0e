import Foundation

/// Certificates made with openssl for one test: a CA, a server certificate it signed for
/// localhost and 127.0.0.1, a client certificate it signed (CN sluice-client), and a second CA that
/// signed nothing (a wrong `sslrootcert`). Owned by
/// the postgres user when the tests run as root, as the server requires of its key.
struct TLSCertificates {
    let directory: String
    var caFile: String { directory + "/ca.crt" }
    var otherCAFile: String { directory + "/other-ca.crt" }
    var serverCertificate: String { directory + "/server.crt" }
    var serverKey: String { directory + "/server.key" }
    var clientCertificate: String { directory + "/client.crt" }
    var clientKey: String { directory + "/client.key" }

    init(directory: String) throws {
        self.directory = directory
        try run(["/bin/bash", "-c", """
            set -euo pipefail
            cd '\(directory)'
            subj() { openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" -keyout "$2.key" -out "$2.crt" 2>/dev/null; }
            subj 'Sluice test CA' ca
            subj 'Sluice other CA' other-ca
            openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -subj /CN=sluice-client -keyout client.key -out client.csr 2>/dev/null
            openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt 2>/dev/null
            chmod 600 server.key client.key
            if [ "$(id -u)" = 0 ]; then chown postgres: server.key server.crt ca.crt; fi
            """])
    }
}

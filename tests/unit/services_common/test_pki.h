// A throwaway certificate authority for TLS tests, made with the openssl
// command line in a fresh temporary directory:
//   ca.pem, server.pem / server.key (SAN 127.0.0.1 and localhost),
//   client.pem / client.key (signed by the CA), other_ca.pem (unrelated).
#pragma once

#include <cstdlib>
#include <string>

namespace linearize::server::testing {

// Returns the directory, or "" if openssl failed.
inline std::string MakeTestPki() {
  char tmpl[] = "/tmp/linearize_pki_XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return "";
  const std::string dir = tmpl;
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string script =
      "cd " + dir + " && " + "openssl req -x509 " + ec +
      " -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem && " + "openssl req -x509 " + ec +
      " -days 1 -subj /CN=other-ca -keyout other_ca.key "
      "-out other_ca.pem && " +
      "openssl req " + ec + " -subj /CN=localhost -keyout server.key -out server.csr && " +
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && " +
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
      "-extfile san.ext -out server.pem && " +
      "openssl req " + ec + " -subj /CN=worker-1 -keyout client.key -out client.csr && " +
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
      "-out client.pem";
  if (std::system(("(" + script + ") >/dev/null 2>&1").c_str()) != 0) return "";
  return dir;
}

inline void RemoveTree(const std::string& dir) {
  if (!dir.empty()) std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace linearize::server::testing

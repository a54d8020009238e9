#include "services/common/server_flags.h"

#include <stdlib.h>

#include "gtest/gtest.h"
#include "services/common/log.h"

namespace linearize::server {
namespace {

TEST(ServerFlagsTest, FlagsAndEnvironmentFillTheOptions) {
  setenv("LINEARIZE_TOKENS_FILE", "/etc/linearize/tokens", 1);
  CLI::App app("test");
  ServerFlags flags;
  flags.listen = "0.0.0.0:50061";  // a service's own default
  AddServerFlags(app, flags);
  const char* argv[] = {"test",   "--metrics-listen",    "127.0.0.1:0", "--tls-cert",
                        "c.pem",  "--tls-key",           "k.pem",       "--tls-client-ca",
                        "ca.pem", "--max-request-bytes", "1000",        "--log-format",
                        "json"};
  app.parse(static_cast<int>(std::size(argv)), argv);
  unsetenv("LINEARIZE_TOKENS_FILE");
  auto options = ApplyServerFlags(flags, "scheduler");
  SetLogFormat(LogFormat::kLogfmt);
  SetLogService("");
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->listen_address, "0.0.0.0:50061");
  EXPECT_EQ(options->metrics_listen_address, "127.0.0.1:0");
  EXPECT_EQ(options->tls.cert_file, "c.pem");
  EXPECT_EQ(options->tls.key_file, "k.pem");
  EXPECT_EQ(options->tls.ca_file, "ca.pem");
  EXPECT_EQ(options->tokens_file, "/etc/linearize/tokens");
  EXPECT_EQ(options->max_receive_message_bytes, 1000);
  EXPECT_EQ(options->service_name, "scheduler");
}

TEST(ServerFlagsTest, BadValuesNameTheFlag) {
  ServerFlags flags;
  flags.log_level = "loud";
  EXPECT_NE(ApplyServerFlags(flags, "s").status().message().find("--log-level"), std::string::npos);
  flags = ServerFlags();
  flags.max_request_bytes = -1;
  EXPECT_NE(ApplyServerFlags(flags, "s").status().message().find("--max-request-bytes"),
            std::string::npos);
}

}  // namespace
}  // namespace linearize::server

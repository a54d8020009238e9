#include "services/common/status.h"

#include "gtest/gtest.h"

namespace linearize::server {
namespace {

TEST(StatusTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  const grpc::Status s = ToGrpcStatus(absl::NotFoundError("job_id: no job \"j-1\""));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "job_id: no job \"j-1\"");
  // Every canonical code maps to the same number and back.
  for (int code = 1; code <= 16; ++code) {
    absl::Status in(static_cast<absl::StatusCode>(code), "m");
    grpc::Status g = ToGrpcStatus(in);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(FromGrpcStatus(g), in);
  }
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(StatusTest, UnknownCodesBecomeUnknown) {
  absl::Status odd(static_cast<absl::StatusCode>(42), "odd");
  EXPECT_EQ(ToGrpcStatus(odd).error_code(), grpc::StatusCode::UNKNOWN);
}

TEST(StatusTest, LongMessagesAreCutOnACharacterBoundary) {
  std::string message(4094, 'a');
  message += "ééé";  // 2-byte characters across the cut
  const grpc::Status s = ToGrpcStatus(absl::InvalidArgumentError(message));
  EXPECT_LE(s.error_message().size(), 4096u);
  EXPECT_TRUE(s.error_message().ends_with("a..."));
}

}  // namespace
}  // namespace linearize::server

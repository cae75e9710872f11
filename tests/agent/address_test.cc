// Address parsing and conversion (agent/address.h): ports, IP literals,
// UNIX paths, PackedAddress.
#include "agent/address.h"

#include <string>

#include "gtest/gtest.h"

namespace sockagent {
namespace {

TEST(EngineAddress, ParsePort) {
  EXPECT_EQ(ParsePort("")->value(), 0);
  EXPECT_EQ(ParsePort("8080")->value(), 8080);
  EXPECT_FALSE(ParsePort("www")->has_value());
  EXPECT_EQ(ParsePort("65536").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParsePort("99999999999").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EngineAddress, LiteralsAndUnixPaths) {
  EXPECT_TRUE(ParseIpLiteral("127.0.0.1").has_value());
  EXPECT_TRUE(ParseIpLiteral("[::1]").has_value());
  EXPECT_FALSE(ParseIpLiteral("localhost").has_value());
  EXPECT_FALSE(ParseIpLiteral("").has_value());
  EXPECT_TRUE(UnixEndpoint(std::string(107, 'a')).ok());
  EXPECT_EQ(UnixEndpoint(std::string(108, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnixEndpoint("").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto abstract = UnixEndpoint("@name");
  ASSERT_TRUE(abstract.ok());
  PackedAddress back =
      PackedAddress::FromKernel(abstract->data(), abstract->size());
  EXPECT_EQ(back.Unpack().unix_path, "@name");
  auto path = UnixEndpoint("/tmp/s");
  EXPECT_EQ(
      PackedAddress::FromKernel(path->data(), path->size()).Unpack().ToString(),
      "unix:/tmp/s");
  EXPECT_EQ(PackedAddress::Ip(*ParseIpLiteral("::1"), 80).ToString(),
            "[::1]:80");
  EXPECT_LE(sizeof(PackedAddress), 48u);
}

}  // namespace
}  // namespace sockagent

// sockctl writes Stream requests as bytes it framed itself (DataRequest,
// SerializedRequest): what protobuf parses out of them must be exactly the
// StreamRequest meant, at every varint length boundary, and the data must
// be referenced, not copied.
#include "cli/stream_stdio.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sockctl {
namespace {

using sockagent::v1::StreamRequest;

std::string Flatten(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string out;
  for (const grpc::Slice& slice : slices) {
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return out;
}

std::string Pattern(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i * 7 + 3);
  return bytes;
}

class DataRequestSizes : public ::testing::TestWithParam<size_t> {};

TEST_P(DataRequestSizes, ParsesAsTheDataFieldWithTheSameBytes) {
  const std::string bytes = Pattern(GetParam());
  const grpc::ByteBuffer message = DataRequest(grpc::Slice(bytes));
  const std::string wire = Flatten(message);

  StreamRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  ASSERT_EQ(parsed.kind_case(), StreamRequest::kData);
  EXPECT_EQ(parsed.data(), bytes);
  // The same bytes protobuf itself would send.
  StreamRequest expected;
  expected.set_data(bytes);
  EXPECT_EQ(wire, expected.SerializeAsString());
}

// Around each varint length boundary (1, 2, 3 and 4 length bytes), and
// sockctl's 1 MiB chunk.
INSTANTIATE_TEST_SUITE_P(VarintBoundaries, DataRequestSizes,
                         ::testing::Values(0, 1, 127, 128, 16383, 16384,
                                           1048576, 2097151, 2097152));

TEST(DataRequest, ReferencesTheBytesInsteadOfCopyingThem) {
  const grpc::Slice bytes(Pattern(64 * 1024));
  const grpc::ByteBuffer message = DataRequest(bytes);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(message.Dump(&slices).ok());
  ASSERT_EQ(slices.size(), 2u);
  EXPECT_EQ(slices[0].size(), 1u + 3u);  // Tag, then 65536 in 3 bytes.
  EXPECT_EQ(slices[1].begin(), bytes.begin());
  EXPECT_EQ(slices[1].size(), bytes.size());
}

TEST(SerializedRequest, IsTheMessageProtobufWouldSend) {
  StreamRequest start;
  start.mutable_start()->set_attach_connection_id("conn-7");
  StreamRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(Flatten(SerializedRequest(start))));
  ASSERT_EQ(parsed.kind_case(), StreamRequest::kStart);
  EXPECT_EQ(parsed.start().attach_connection_id(), "conn-7");
}

}  // namespace
}  // namespace sockctl

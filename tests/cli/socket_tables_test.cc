// How the socket verbs print servers and connections (cli/socket_tables.h):
// every -o form of both kinds, which share one printer.
#include "cli/socket_tables.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "sockagent/v1/agent.pb.h"

namespace sockctl {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

sockagent::v1::SocketAddress Ip(const std::string& ip, uint32_t port) {
  sockagent::v1::SocketAddress a;
  a.set_family(ip.find(':') != std::string::npos ? sockagent::v1::FAMILY_IPV6
                                                 : sockagent::v1::FAMILY_IPV4);
  a.set_ip(ip);
  a.set_port(port);
  return a;
}

// srv-1 on 127.0.0.1:7000; srv-2 dual stack on two addresses.
sockagent::v1::ListServersResponse TwoServers() {
  sockagent::v1::ListServersResponse response;
  sockagent::v1::Server* one = response.add_servers();
  one->set_id("srv-1");
  one->set_transport(sockagent::v1::TRANSPORT_TCP);
  *one->add_local_addresses() = Ip("127.0.0.1", 7000);
  sockagent::v1::Server* two = response.add_servers();
  two->set_id("srv-2");
  two->set_transport(sockagent::v1::TRANSPORT_UDP);
  *two->add_local_addresses() = Ip("0.0.0.0", 53);
  *two->add_local_addresses() = Ip("::", 53);
  return response;
}

// conn-1 with both ends; conn-2 with no remote address (yet).
sockagent::v1::ListConnectionsResponse TwoConnections() {
  sockagent::v1::ListConnectionsResponse response;
  sockagent::v1::Connection* one = response.add_connections();
  one->set_id("conn-1");
  *one->mutable_local() = Ip("127.0.0.1", 7000);
  *one->mutable_remote() = Ip("127.0.0.1", 41234);
  sockagent::v1::Connection* two = response.add_connections();
  two->set_id("conn-2");
  *two->mutable_local() = Ip("::1", 9);
  return response;
}

std::string Servers(OutputFormat format) {
  const sockagent::v1::ListServersResponse response = TwoServers();
  std::ostringstream out;
  EXPECT_TRUE(PrintServers(out, response, response.servers(), format,
                           TableView::kFull));
  return out.str();
}

std::string Connections(OutputFormat format) {
  const sockagent::v1::ListConnectionsResponse response = TwoConnections();
  std::ostringstream out;
  EXPECT_TRUE(PrintConnections(out, response, response.connections(), format,
                               TableView::kBrief));
  return out.str();
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

TEST(SocketTables, NamePrintsOneIdPerLine) {
  EXPECT_EQ(Servers(OutputFormat::kName), "srv-1\nsrv-2\n");
  EXPECT_EQ(Connections(OutputFormat::kName), "conn-1\nconn-2\n");
}

TEST(SocketTables, AddrPrintsEveryBoundAddressOrLocalAndRemote) {
  EXPECT_EQ(Servers(OutputFormat::kAddr),
            "127.0.0.1:7000\n0.0.0.0:53\n[::]:53\n");
  EXPECT_EQ(Connections(OutputFormat::kAddr),
            "127.0.0.1:7000 127.0.0.1:41234\n[::1]:9 -\n");
}

TEST(SocketTables, TableHasTheViewsHeaderAndARowEach) {
  const std::string servers = Servers(OutputFormat::kTable);
  EXPECT_THAT(Lines(servers), ElementsAre(StartsWith("ID"), StartsWith("srv-1"),
                                          StartsWith("srv-2")));
  EXPECT_THAT(servers, HasSubstr("ACCEPTED"));  // The full view's columns.
  EXPECT_THAT(servers, HasSubstr("0.0.0.0:53,[::]:53"));
  const std::string connections = Connections(OutputFormat::kTable);
  EXPECT_THAT(Lines(connections),
              ElementsAre(StartsWith("ID"), StartsWith("conn-1"),
                          StartsWith("conn-2")));
  EXPECT_THAT(connections, Not(HasSubstr("REASON")));  // The brief view.
}

TEST(SocketTables, JsonPrintsTheWholeResponse) {
  EXPECT_THAT(Servers(OutputFormat::kJson),
              StartsWith("{\"servers\":[{\"id\":\"srv-1\""));
  EXPECT_THAT(Connections(OutputFormat::kJson),
              StartsWith("{\"connections\":[{\"id\":\"conn-1\""));
}

}  // namespace
}  // namespace sockctl

// The multiplexer of one meta connection driven by hand: bytes in, bytes out,
// no socket.
#include <cacheaside/detail/meta/mux.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

using namespace cacheaside;
using detail::MetaCmd;
using detail::MetaMux;
using detail::MetaOp;
using namespace std::chrono_literals;

namespace {

using MuxTime = MetaMux::Time;
const MuxTime mux_t0 = MuxTime() + 1h;

// Feeds `bytes` to the mux `chunk` bytes at a time; false when it refused them.
bool feed(MetaMux& mux, std::string_view bytes, std::vector<MetaMux::Tag>& done,
          std::size_t chunk = 1 << 20) {
  while (!bytes.empty()) {
    std::size_t room = 0;
    char* p = mux.read_space(16, room);
    std::size_t n = std::min({room, chunk, bytes.size()});
    std::memcpy(p, bytes.data(), n);
    bytes.remove_prefix(n);
    if (!mux.received(n, done)) return false;
  }
  return true;
}

struct MuxOps {
  StoreItem item;
  MetaOp get, set, del;
  int tags[3] = {0, 1, 2};
  MuxOps() {
    get.key = "a";
    get.item = &item;
    set.cmd = MetaCmd::set;
    set.key = "b";
    set.value = "xy";
    set.flags = 3;
    del.cmd = MetaCmd::remove;
    del.key = "c";
  }
  void submit(MetaMux& mux) {
    REQUIRE(mux.submit(get, &tags[0], mux_t0 + 1s));
    REQUIRE(mux.submit(set, &tags[1], mux_t0 + 1s));
    REQUIRE(mux.submit(del, &tags[2], mux_t0 + 1s));
  }
};

}  // namespace

TEST_CASE("mux: one write carries every queued request, replies match in order, however split",
          "[nostore]") {
  for (std::size_t chunk : {std::size_t(1), std::size_t(2), std::size_t(7), std::size_t(1000)}) {
    MetaMux mux;
    MuxOps o;
    o.submit(mux);
    std::string out;
    mux.take_write(out);
    CHECK(out == "mg a v f c O1\r\nms b 2 F3 T0 O2\r\nxy\r\nmd c O3\r\n");
    CHECK(mux.queued() == 0);
    CHECK(mux.awaiting() == 3);
    std::vector<MetaMux::Tag> done;
    REQUIRE(feed(mux, "VA 5 f7 c42 O1\r\nhe\r\no\r\nHD O2\r\nNF O3\r\n", done, chunk));
    REQUIRE(done.size() == 3);
    CHECK(done[0] == &o.tags[0]);
    CHECK(done[2] == &o.tags[2]);
    CHECK(o.get.status == StoreStatus::ok);
    CHECK(o.item.value == "he\r\no");  // a value may hold "\r\n"
    CHECK(o.item.flags == 7);
    CHECK(o.item.cas == 42);
    CHECK(o.set.status == StoreStatus::ok);
    CHECK(o.del.status == StoreStatus::not_found);
    CHECK(mux.idle());
  }
}

TEST_CASE("mux: a reply for another request, or one nobody asked for, breaks the connection",
          "[nostore]") {
  MetaMux mux;
  MuxOps o;
  o.submit(mux);
  std::string out;
  mux.take_write(out);
  std::vector<MetaMux::Tag> done;
  SECTION("wrong O token") { CHECK_FALSE(feed(mux, "HD O2\r\n", done)); }
  SECTION("no O token") { CHECK_FALSE(feed(mux, "EN\r\n", done)); }
  SECTION("a reply past the last request") {
    CHECK_FALSE(feed(mux, "EN O1\r\nHD O2\r\nHD O3\r\nHD O4\r\n", done));
    CHECK(done.size() == 3);
  }
  SECTION("a value without its terminator") {
    CHECK_FALSE(feed(mux, "VA 2 f0 c1 O1\r\nabXY", done));
  }
  SECTION("a line that never ends") { CHECK_FALSE(feed(mux, std::string(10000, 'V'), done)); }
  SECTION("the server's ERROR") { CHECK_FALSE(feed(mux, "ERROR\r\n", done)); }
  CHECK(done.size() <= 3);
}

TEST_CASE("mux: a lost connection fails what was written and keeps what was not", "[nostore]") {
  MetaMux mux;
  MuxOps o;
  REQUIRE(mux.submit(o.get, &o.tags[0], mux_t0 + 1s));
  std::string out;
  mux.take_write(out);
  REQUIRE(mux.submit(o.set, &o.tags[1], mux_t0 + 1s));  // queued after the write
  std::vector<MetaMux::Tag> done;
  REQUIRE(feed(mux, "VA 1 f0 c1 O1\r\n", done));  // half a reply, then the connection goes
  CHECK(done.empty());
  mux.lost(StoreStatus::error, done);
  REQUIRE(done.size() == 1);
  CHECK(done[0] == &o.tags[0]);
  CHECK(o.get.status == StoreStatus::error);
  CHECK(mux.queued() == 1);
  // The next connection: the kept request goes out with a token no old reply can match.
  out.clear();
  done.clear();
  mux.take_write(out);
  CHECK(out == "ms b 2 F3 T0 O2\r\nxy\r\n");
  CHECK_FALSE(feed(mux, "HD O1\r\n", done));  // the first connection's answer
  mux.lost(StoreStatus::error, done);
  CHECK(o.set.status == StoreStatus::error);
}

TEST_CASE("mux: beyond the bound a request is refused, not queued", "[nostore]") {
  detail::MetaMuxLimits lim;
  lim.max_requests = 2;
  MetaMux mux(lim);
  MuxOps o;
  CHECK(mux.submit(o.get, &o.tags[0], mux_t0));
  std::string out;
  mux.take_write(out);
  CHECK(mux.submit(o.set, &o.tags[1], mux_t0));
  CHECK_FALSE(mux.submit(o.del, &o.tags[2], mux_t0));  // one awaiting, one queued
  std::vector<MetaMux::Tag> done;
  REQUIRE(feed(mux, "EN O1\r\n", done));
  CHECK(o.get.status == StoreStatus::not_found);
  CHECK(mux.submit(o.del, &o.tags[2], mux_t0));
  mux.fail_queued(StoreStatus::unavailable, done);
  CHECK(done.size() == 3);
  CHECK(o.del.status == StoreStatus::unavailable);
}

TEST_CASE("mux: deadlines fail queued requests and call a silent server frozen", "[nostore]") {
  MetaMux mux;
  MuxOps o;
  REQUIRE(mux.submit(o.get, &o.tags[0], mux_t0 + 1s));
  std::string out;
  mux.take_write(out);
  REQUIRE(mux.submit(o.set, &o.tags[1], mux_t0 + 2s));
  CHECK(mux.next_deadline() == mux_t0 + 1s);
  std::vector<MetaMux::Tag> done;
  CHECK_FALSE(mux.expire(mux_t0 + 500ms, done));
  CHECK(mux.expire(mux_t0 + 1s, done));  // written and unanswered: frozen
  CHECK(done.empty());
  mux.lost(StoreStatus::timeout, done);
  CHECK(o.get.status == StoreStatus::timeout);
  CHECK(mux.next_deadline() == mux_t0 + 2s);
  CHECK_FALSE(mux.expire(mux_t0 + 2s, done));  // queued only: failed, no connection to blame
  CHECK(o.set.status == StoreStatus::timeout);
  CHECK(done.size() == 2);
  CHECK(mux.next_deadline() == MuxTime::max());
}

TEST_CASE("mux: a large value arrives in few reads and the buffer shrinks after it", "[nostore]") {
  MetaMux mux;
  MuxOps o;
  REQUIRE(mux.submit(o.get, &o.tags[0], mux_t0 + 1s));
  std::string out;
  mux.take_write(out);
  std::string big(3 << 20, 'v');
  std::vector<MetaMux::Tag> done;
  REQUIRE(feed(mux, "VA " + std::to_string(big.size()) + " f0 c9 O1\r\n", done));
  std::size_t room = 0;
  mux.read_space(16, room);
  CHECK(room >= big.size() + 2);  // asks for the whole value at once
  REQUIRE(feed(mux, big + "\r\n", done));
  REQUIRE(done.size() == 1);
  CHECK(o.item.value == big);
  mux.read_space(16, room);
  CHECK(room <= (1 << 16));
}

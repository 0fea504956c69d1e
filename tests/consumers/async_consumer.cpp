// The asynchronous cache from its component alone (no server: the loader answers).
#include <boost/asio/io_context.hpp>
#include <cacheaside/async.hpp>
int main() {
  boost::asio::io_context io;
  auto store = std::make_shared<cacheaside::AsyncMetaStore>(
      io.get_executor(), "--SERVER=127.0.0.1:1 --POLL-TIMEOUT=50");
  cacheaside::AsyncCacheAside<int, std::string, cacheaside::StringSerializer> c(
      store,
      [](const int& k, cacheaside::LoadHandler<std::string> h) { h(nullptr, std::to_string(k)); });
  std::optional<std::string> got;
  c.async_get(7, [&](std::exception_ptr, std::optional<std::string> v) { got = std::move(v); });
  while (!got && io.run_one()) {
  }
  return got == std::string("7") ? 0 : 1;
}

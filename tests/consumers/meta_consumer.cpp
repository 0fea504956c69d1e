// The meta protocol's store from its component alone (no server: the loader answers).
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/meta.hpp>
int main() {
  auto store = std::make_shared<cacheaside::MetaStore>("--SERVER=127.0.0.1:1 --POLL-TIMEOUT=50");
  cacheaside::CacheAside<int, std::string, cacheaside::StringSerializer> c(
      store, [](const int& k) { return std::optional<std::string>(std::to_string(k)); });
  return c.get(7) == std::string("7") && c.stats().cache_errors >= 1 ? 0 : 1;
}

// The core alone: no third-party library, no libmemcached on the include path needed.
#include <cacheaside/cacheaside.hpp>
int main() {
  auto store = std::make_shared<cacheaside::InMemoryStore>();
  cacheaside::CacheAside<int, std::string, cacheaside::StringSerializer> c(
      store, [](const int& k) { return std::optional<std::string>(std::to_string(k)); });
  return c.get(7) == std::string("7") && c.get(7) == std::string("7") ? 0 : 1;
}

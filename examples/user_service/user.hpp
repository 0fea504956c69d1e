// The user record and its JSON forms.
#pragma once

#include <cacheaside/serializer.hpp>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace user_service {

struct User {
  long long id = 0;
  std::string name;
  std::string email;
  bool operator==(const User& o) const { return id == o.id && name == o.name && email == o.email; }
};

// What the cache stores (via cacheaside::JsonSerializer).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(User, id, name, email)

/// The HTTP body, fields in the order the original service writes them:
/// {"id":3,"name":"user3","email":"user3@example.com"}
inline void append_json(std::string& out, const User& u) {
  out += "{\"id\":";
  out += std::to_string(u.id);
  out += ",\"name\":";
  out += nlohmann::json(u.name).dump();
  out += ",\"email\":";
  out += nlohmann::json(u.email).dump();
  out += '}';
}

inline std::string to_json(const User& u) {
  std::string out;
  append_json(out, u);
  return out;
}

inline std::string to_json(const std::vector<User>& users) {
  std::string out = "[";
  for (std::size_t i = 0; i < users.size(); ++i) {
    if (i) out += ',';
    append_json(out, users[i]);
  }
  out += ']';
  return out;
}

/// The list with its HTTP body rendered once, shared by every request that reads it:
/// a near hit of `users_all` then costs no serialization.
struct UserList {
  std::vector<User> users;
  std::string body;  ///< to_json(users)
  explicit UserList(std::vector<User> u) : users(std::move(u)), body(to_json(users)) {}
};

/// Stores a UserList exactly as JsonSerializer<std::vector<User>> stores the vector
/// (same codec, same bytes), so either reads what the other wrote.
struct UserListSerializer {
  static constexpr std::uint8_t codec = cacheaside::codec_id::json;
  std::string serialize(const std::shared_ptr<const UserList>& list) const {
    return nlohmann::json(list->users).dump();
  }
  std::shared_ptr<const UserList> deserialize(std::string_view bytes) const {
    return std::make_shared<const UserList>(
        nlohmann::json::parse(bytes.begin(), bytes.end()).get<std::vector<User>>());
  }
};

}  // namespace user_service

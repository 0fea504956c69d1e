// The record most tests cache: a user row, stored as JSON.
#pragma once

#include <cacheaside/json.hpp>
#include <string>

namespace cacheaside_test {

struct User {
  int id = 0;
  std::string name;
  std::string email;
  bool operator==(const User& o) const { return id == o.id && name == o.name && email == o.email; }
  bool operator!=(const User& o) const { return !(*this == o); }
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(User, id, name, email)

inline User make_user(int id) {
  return {id, "user" + std::to_string(id), "user" + std::to_string(id) + "@example.com"};
}

}  // namespace cacheaside_test

// Files that hold a secret (signing keys, memcached credentials, a TLS key): only
// their owner may read them.
#pragma once

#include <string>

namespace user_service {

/// Throws std::runtime_error naming `flag` when `path` cannot be read, or group or
/// others may read it.
void check_private_file(const std::string& flag, const std::string& path);

}  // namespace user_service

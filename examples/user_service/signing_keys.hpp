// The caches' signing keys, from a file or the environment: never from a flag's
// value, which `ps` shows to every user of the machine.
#pragma once

#include <cacheaside/options.hpp>
#include <string>
#include <vector>

namespace user_service {

/// Keys from text: one `<id> <secret>` a line, the first signs; blank lines and lines
/// starting with # are skipped. Throws std::runtime_error naming `source` and the line.
std::vector<cacheaside::SigningKey> parse_signing_keys(const std::string& text,
                                                       const std::string& source);

/// The keys of `file` (--signing-keys; refused when group or others may read it), else
/// those of the environment variable USER_SERVICE_SIGNING_KEYS (lines as above, or
/// separated by ';'); none when both are unset.
std::vector<cacheaside::SigningKey> load_signing_keys(const std::string& file);

}  // namespace user_service

#include "private_file.hpp"

#include <sys/stat.h>

#include <stdexcept>

namespace user_service {

void check_private_file(const std::string& flag, const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw std::runtime_error(flag + ": cannot read " + path);
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw std::runtime_error(flag + ": " + path + " may be read by group or others (chmod 600 it)");
}

}  // namespace user_service

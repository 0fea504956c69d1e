// Signs and verifies stored values (Options::signing_keys): the first key signs,
// every key verifies, so keys rotate without a cold cache.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../../envelope.hpp"
#include "../../error.hpp"
#include "../../options.hpp"
#include "hmac.hpp"

namespace cacheaside::detail {

class Signer {
 public:
  /// Each secret gives its own MAC key (HMAC of a fixed label under the secret),
  /// so the secret itself is never the key of anything stored.
  explicit Signer(const std::vector<SigningKey>& keys) {
    if (keys.empty()) throw Error("cacheaside: a signer needs a key");
    for (const SigningKey& k : keys)
      keys_.push_back({k.id, HmacKey(bytes_of(HmacKey(k.secret).mac("cacheaside value mac")))});
  }

  const std::string& signing_id() const { return keys_.front().id; }

  /// Fills the tag of bytes written by envelope::encode_signed with signing_id().
  void sign(std::string_view mkey, std::uint32_t flags, std::string& bytes) const {
    std::size_t at = envelope::header_size + keys_.front().id.size();
    Digest t = tag(keys_.front().key, mkey, flags, bytes, at);
    bytes.replace(at, t.size(), reinterpret_cast<const char*>(t.data()), t.size());
  }

  /// Why the signed entry e (decoded from bytes, stored under mkey with flags)
  /// is not genuine, or nullptr. As long for every refusal: an unknown key id is
  /// still MACed (with the signing key).
  const char* verify(std::string_view mkey, std::uint32_t flags, std::string_view bytes,
                     const envelope::Entry& e) const {
    bool known = false;
    const Key* k = key_for(e.key_id, known);
    Digest t = tag(k->key, mkey, flags, bytes, envelope::header_size + e.key_id.size());
    bool same = constant_time_equal(bytes_of(t), e.tag);
    if (!known) return "unknown signing key id";
    return same ? nullptr : "wrong tag";
  }

  /// The suffix that signs a near-log record of the log `log`: " <id> <hex tag>".
  std::string record_suffix(std::string_view log, std::string_view record) const {
    std::string out = " " + keys_.front().id + " ";
    append_hex(record_tag(keys_.front().key, log, record), out);
    return out;
  }

  /// Whether hex_tag, under the key `id`, signs record in the log `log` (constant
  /// time, as verify).
  bool record_ok(std::string_view id, std::string_view log, std::string_view record,
                 std::string_view hex_tag) const {
    bool known = false;
    const Key* k = key_for(id, known);
    std::string expected;
    append_hex(record_tag(k->key, log, record), expected);
    return constant_time_equal(expected, hex_tag) && known;
  }

 private:
  // A record's message starts with 0xFF, which no value's can (its first byte is
  // the length of a memcached key, at most 250): a tag of one never fits the other.
  static Digest record_tag(const HmacKey& key, std::string_view log, std::string_view record) {
    char head[2] = {static_cast<char>(0xFF), static_cast<char>(log.size() & 0xFF)};
    HmacKey::Mac m = key.begin();
    m.update({head, sizeof head});
    m.update(log);
    m.update(record);
    return m.finish();
  }

  struct Key {
    std::string id;
    HmacKey key;
  };

  // Over the key's length and bytes, the flags, and bytes but the tag at `at`.
  static Digest tag(const HmacKey& key, std::string_view mkey, std::uint32_t flags,
                    std::string_view bytes, std::size_t at) {
    char head[5] = {static_cast<char>(mkey.size()), static_cast<char>(flags),
                    static_cast<char>(flags >> 8), static_cast<char>(flags >> 16),
                    static_cast<char>(flags >> 24)};
    HmacKey::Mac m = key.begin();
    m.update({head, sizeof head});
    m.update(mkey);
    m.update(bytes.substr(0, at));
    m.update(bytes.substr(at + envelope::tag_size));
    return m.finish();
  }

  // The key with this id, else the signing key (so an unknown id costs a MAC too).
  const Key* key_for(std::string_view id, bool& known) const {
    for (const Key& c : keys_) {
      if (c.id == id) {
        known = true;
        return &c;
      }
    }
    known = false;
    return &keys_.front();
  }

  std::vector<Key> keys_;
};

}  // namespace cacheaside::detail

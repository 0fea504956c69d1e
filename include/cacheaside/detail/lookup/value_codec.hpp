// Values to stored bytes and back: the serializer inside the envelope, TTLs
// with jitter, size limits (internal).
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "../../clock.hpp"
#include "../../envelope.hpp"
#include "../../exptime.hpp"
#include "../../options.hpp"
#include "../../protocol.hpp"
#include "../integrity/signer.hpp"
#include "../random.hpp"
#include "../reporter.hpp"

namespace cacheaside::detail {

/// Bytes ready for the store.
struct Encoded {
  std::string bytes;
  std::uint32_t flags = 0;
  Exptime exptime = 0;
};

template <class Value, class Serializer>
class ValueCodec {
 public:
  ValueCodec(Serializer serializer, const Options& opt, std::chrono::milliseconds negative_ttl,
             const Clock& clock, const Reporter& report)
      : serializer_(std::move(serializer)),
        opt_(opt),
        negative_ttl_(negative_ttl),
        clock_(clock),
        report_(report) {
    if (!opt.signing_keys.empty()) signer_.emplace(opt.signing_keys);
  }

  /// The copy a lookup holds (a value, or nullopt for a cached absence). False
  /// when the serializer cannot read it (reported).
  bool decode(std::string_view key, const Lookup& l, std::optional<Value>& out) const {
    if (l.negative) {
      out.reset();
      return true;
    }
    try {
      out.emplace(serializer_.deserialize(l.payload()));
      return true;
    } catch (const std::exception& ex) {
      report_.decode_error(key, ex.what());
    } catch (...) {
      report_.decode_error(key, "deserialize threw");
    }
    return false;
  }

  /// Serializes value (or an absence when it is null). False when it must not
  /// be stored: negative caching off, too large, or the serializer threw.
  bool encode(std::string_view key, const std::optional<Value>& value, std::uint32_t load_us,
              Encoded& out) const {
    std::string payload;
    if (value) {
      try {
        payload = serializer_.serialize(*value);
      } catch (const std::exception& ex) {
        report_.serialize_failed(key, ex.what());
        return false;
      } catch (...) {
        report_.serialize_failed(key, "serialize threw");
        return false;
      }
    }
    std::int64_t now = clock_.unix_ms();
    if (opt_.format == Format::raw) {
      if (!value) return false;
      out.bytes = std::move(payload);
      out.flags = 0;
      out.exptime = to_exptime(jittered(opt_.ttl, opt_.ttl_jitter), now);
    } else if (value) {
      auto ttl = jittered(opt_.ttl, opt_.ttl_jitter);
      out.flags = envelope::value_flags(Serializer::codec, signer_.has_value());
      wrap(key, now + ttl.count(), load_us, payload, out);
      // memcached's clock ticks in whole seconds, so an item can vanish up to 1 s
      // early: the slack keeps it until its logical expiry, which decides freshness.
      out.exptime = to_exptime(ttl + opt_.max_stale + std::chrono::seconds(1), now);
    } else {
      if (negative_ttl_.count() <= 0) return false;
      auto ttl = jittered(negative_ttl_, opt_.ttl_jitter);
      out.flags = envelope::negative_flags(Serializer::codec, signer_.has_value());
      wrap(key, now + ttl.count(), load_us, {}, out);
      out.exptime = to_exptime(ttl + std::chrono::seconds(1), now);
    }
    if (out.bytes.size() + key.size() > opt_.max_value_bytes) {
      report_.oversize(key, "larger than max_value_bytes");
      return false;
    }
    return true;
  }

 private:
  // The envelope around payload, signed (for key and out.flags) with signing keys.
  void wrap(std::string_view key, std::int64_t expiry_ms, std::uint32_t load_us,
            std::string_view payload, Encoded& out) const {
    if (!signer_) return envelope::encode(out.bytes, expiry_ms, load_us, payload);
    envelope::encode_signed(out.bytes, expiry_ms, load_us, signer_->signing_id(), payload);
    signer_->sign(key, out.flags, out.bytes);
  }

  Serializer serializer_;
  const Options& opt_;
  std::chrono::milliseconds negative_ttl_;
  const Clock& clock_;
  const Reporter& report_;
  std::optional<Signer> signer_;
};

}  // namespace cacheaside::detail

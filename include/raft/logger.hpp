// Logging: a policy with one instance per RaftGroup (never a global), structured records, and a
// default (NoLogger) whose every log statement compiles away.
//
// A group logs what an operator needs to reconstruct an incident, once per event and with its
// cause: role and term changes (with the message that caused them), the loss of leadership, a
// lease revoked before a transfer, snapshots taken and installed, configuration changes, a
// storage failure. Records carry numbers and constant texts only: building one
// allocates nothing and formats nothing; the logger decides what a line looks like.
#pragma once

#include <array>
#include <charconv>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <optional>
#include <span>
#include <string_view>

#include <raft/types.hpp>

namespace tenure::raft {

/// Severity. `off` is a threshold only: no record is logged at it.
enum class LogLevel : std::uint8_t { debug, info, warn, error, off };

constexpr std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::warn:
      return "warn";
    case LogLevel::error:
      return "error";
    case LogLevel::off:
      return "off";
  }
  return "?";
}

/// "debug", "info", "warn", "error" or "off"; nullopt for anything else.
constexpr std::optional<LogLevel> parse_log_level(std::string_view text) noexcept {
  for (LogLevel l :
       {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error, LogLevel::off}) {
    if (text == to_string(l)) {
      return l;
    }
  }
  return std::nullopt;
}

/// One `key=value` of a record: an unsigned or signed number, or a text. A text must stay valid
/// until log() returns (the group passes constant strings and names of enumerators).
struct LogField {
  enum class Kind : std::uint8_t { unsigned_number, signed_number, text };
  std::string_view key;
  Kind kind = Kind::unsigned_number;
  std::uint64_t number = 0;  // unsigned_number; signed_number as two's complement
  std::string_view text;

  static constexpr LogField u(std::string_view key, std::uint64_t value) noexcept {
    return LogField{key, Kind::unsigned_number, value, {}};
  }
  static constexpr LogField i(std::string_view key, std::int64_t value) noexcept {
    return LogField{key, Kind::signed_number, static_cast<std::uint64_t>(value), {}};
  }
  static constexpr LogField t(std::string_view key, std::string_view value) noexcept {
    return LogField{key, Kind::text, 0, value};
  }
};

/// One event. `event` is a stable, machine-readable name (docs/operations.md lists them);
/// `message` says it for people. group, node, term and role are the group's at the moment of
/// the event (after it: a term_changed record carries the new term and `old_term`). Runtime
/// records (a transport's) have no term and an empty role.
struct LogRecord {
  static constexpr std::size_t kMaxFields = 8;

  LogLevel level = LogLevel::info;
  std::string_view event;
  std::string_view message;
  std::uint64_t group = 0;
  NodeId node = kNoNode;
  Term term = 0;
  std::string_view role;
  std::array<LogField, kMaxFields> fields{};
  std::size_t field_count = 0;

  /// Adds a field; past kMaxFields the field is dropped (a record never allocates).
  constexpr LogRecord& with(LogField f) noexcept {
    if (field_count < kMaxFields) {
      fields[field_count++] = f;
    }
    return *this;
  }
  constexpr std::span<const LogField> extra() const noexcept {
    return std::span<const LogField>(fields.data(), field_count);
  }
};

/// What a RaftGroup needs of its `logger_type`:
/// - `enabled(level)`: whether a record of that level would be written. The group asks before
///   it builds a record, so a logger that answers with a constant `false` (NoLogger) costs
///   nothing at all. Called on the group's thread; must be cheap.
/// - `log(record)`: writes the record. Called on the group's thread, inside the group's input
///   (never re-enter the group from it); the record and its texts live until it returns. Must
///   not throw, and should not block for long: it runs on the group's hot path.
/// A logger is default-constructed with its group and reached through `group.logger()` to
/// configure it (a level, an output). It is per group: nothing in tenure is global.
template <class L>
concept Logger = requires(L& logger, const L& const_logger, const LogRecord& record,
                          LogLevel level) {
  { const_logger.enabled(level) }
  noexcept->std::convertible_to<bool>;
  { logger.log(record) }
  noexcept;
};

/// The default: logs nothing, and the group's log statements compile to nothing.
struct NoLogger {
  static constexpr bool enabled(LogLevel) noexcept { return false; }
  static constexpr void log(const LogRecord&) noexcept {}
};

namespace detail {

/// Formats into a fixed buffer; what does not fit is cut (and marked with "...").
class LineBuffer {
 public:
  static constexpr std::size_t kCapacity = 1024;

  void put(std::string_view s) noexcept {
    for (char c : s) {
      put(c);
    }
  }
  void put(char c) noexcept {
    if (size_ < kCapacity - 4) {
      data_[size_++] = c;
    } else if (!cut_) {
      cut_ = true;
      data_[size_++] = '.';
      data_[size_++] = '.';
      data_[size_++] = '.';
    }
  }
  void put_unsigned(std::uint64_t v) noexcept {
    char digits[24];
    auto r = std::to_chars(digits, digits + sizeof digits, v);
    put(std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)));
  }
  void put_signed(std::int64_t v) noexcept {
    char digits[24];
    auto r = std::to_chars(digits, digits + sizeof digits, v);
    put(std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)));
  }
  /// A value: bare when it is a plain word, else quoted with `"` and `\` escaped (logfmt).
  void put_value(std::string_view s) noexcept {
    bool plain = !s.empty();
    for (char c : s) {
      if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
        plain = false;
      }
    }
    if (plain) {
      put(s);
      return;
    }
    put('"');
    for (char c : s) {
      if (c == '"' || c == '\\') {
        put('\\');
        put(c);
      } else if (static_cast<unsigned char>(c) < 0x20) {
        put(' ');
      } else {
        put(c);
      }
    }
    put('"');
  }
  std::string_view view() const noexcept { return std::string_view(data_.data(), size_); }

 private:
  std::array<char, kCapacity> data_{};
  std::size_t size_ = 0;
  bool cut_ = false;
};

}  // namespace detail

/// Formats `record` as one logfmt line without the timestamp and without a newline:
/// `level=info event=term_changed group=1 node=2 term=7 role=follower old_term=6 ...
/// msg="..."`. Keys without a value (no role, term 0 of a runtime record) are left out.
inline void format_log_record(const LogRecord& record, detail::LineBuffer& out) noexcept {
  out.put("level=");
  out.put(to_string(record.level));
  out.put(" event=");
  out.put_value(record.event);
  if (record.group != 0) {
    out.put(" group=");
    out.put_unsigned(record.group);
  }
  if (record.node != kNoNode) {
    out.put(" node=");
    out.put_unsigned(record.node);
  }
  if (!record.role.empty()) {
    out.put(" term=");
    out.put_unsigned(record.term);
    out.put(" role=");
    out.put(record.role);
  }
  for (const LogField& f : record.extra()) {
    out.put(' ');
    out.put(f.key);
    out.put('=');
    switch (f.kind) {
      case LogField::Kind::unsigned_number:
        out.put_unsigned(f.number);
        break;
      case LogField::Kind::signed_number:
        out.put_signed(static_cast<std::int64_t>(f.number));
        break;
      case LogField::Kind::text:
        out.put_value(f.text);
        break;
    }
  }
  if (!record.message.empty()) {
    out.put(" msg=");
    out.put_value(record.message);
  }
}

/// A logger that writes one line per record to a C stream (stderr unless told otherwise):
/// `2026-12-03T10:42:07.123456Z level=warn event=role_changed group=2 node=3 term=8 ...`.
///
/// Thread-safety: enabled() and set_level() may be called from any thread; each line goes out
/// in one fwrite, which stdio locks, so groups on different threads sharing one stream do not
/// interleave within a line. Allocation: none (the line is formatted on the stack). A line
/// longer than 1 KiB is cut. Errors writing the stream are ignored (a log must not stop the
/// group).
class StreamLogger {
 public:
  StreamLogger() noexcept = default;
  explicit StreamLogger(std::FILE* out, LogLevel level = LogLevel::info) noexcept
      : out_(out), level_(level) {}

  bool enabled(LogLevel level) const noexcept {
    return level != LogLevel::off && level >= level_ && out_ != nullptr;
  }
  void set_level(LogLevel level) noexcept { level_ = level; }
  LogLevel level() const noexcept { return level_; }
  /// Where lines go; nullptr logs nothing.
  void set_output(std::FILE* out) noexcept { out_ = out; }

  void log(const LogRecord& record) noexcept {
    if (!enabled(record.level)) {
      return;
    }
    detail::LineBuffer line;
    put_timestamp(line);
    line.put(' ');
    format_log_record(record, line);
    line.put('\n');
    const std::string_view text = line.view();
    (void)std::fwrite(text.data(), 1, text.size(), out_);
  }

 private:
  static void put_timestamp(detail::LineBuffer& line) noexcept {
    const auto now = std::chrono::system_clock::now();
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
    const std::time_t seconds = static_cast<std::time_t>(micros / 1'000'000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
    line.put(std::string_view(text, n));
    char frac[8];
    const int m =
        std::snprintf(frac, sizeof frac, ".%06u", static_cast<unsigned>(micros % 1'000'000));
    line.put(std::string_view(frac, m > 0 ? static_cast<std::size_t>(m) : 0));
    line.put('Z');
  }

  std::FILE* out_ = stderr;
  LogLevel level_ = LogLevel::info;
};

}  // namespace tenure::raft

#include "core/serve/answer.h"

#include <cmath>
#include <cstdio>

#include "core/serve/js_number.h"

namespace mlpkit::serve {
namespace {

void append_numbers(std::string& text, const float* y, std::size_t count) {
  char buf[kMaxJsNumberChars + 1];
  for (std::size_t i = 0; i < count; ++i) {
    if (i > 0) text.push_back(',');
    const double v = y[i];
    if (std::isfinite(v)) {
      text.append(buf, write_js_number(buf, v));
    } else {
      text.append("null");
    }
  }
}

}  // namespace

std::string http_date(std::time_t seconds) {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm t{};
#ifdef _WIN32
  gmtime_s(&t, &seconds);
#else
  gmtime_r(&seconds, &t);
#endif
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[t.tm_wday], t.tm_mday, kMonths[t.tm_mon],
                t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec);
  return buf;
}

void append_json_answer(std::string& out, const float* y, std::size_t rows, std::size_t width, bool flat,
                        const std::string& date, const std::string& tail) {
  // The body first, into a buffer kept between calls: its length leads the head.
  thread_local std::string body;
  body.clear();
  body.append("{\"outputs\":[");
  if (flat) {
    append_numbers(body, y, rows * width);
    body.append("],\"shape\":[");
    body.append(std::to_string(rows)).push_back(',');
    body.append(std::to_string(width)).append("]}");
  } else {
    for (std::size_t r = 0; r < rows; ++r) {
      if (r > 0) body.push_back(',');
      body.push_back('[');
      append_numbers(body, y + r * width, width);
      body.push_back(']');
    }
    body.append("]}");
  }
  out.append("HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ");
  out.append(std::to_string(body.size()));
  out.append("\r\nDate: ").append(date).append("\r\n").append(tail).append(body);
}

void append_overloaded_answer(std::string& out, const std::string& body, const std::string& retry_after, const std::string& date,
                              const std::string& tail) {
  out.append("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ");
  out.append(std::to_string(body.size()));
  out.append("\r\nRetry-After: ").append(retry_after);
  out.append("\r\nDate: ").append(date).append("\r\n").append(tail).append(body);
}

}  // namespace mlpkit::serve

#pragma once
// Every hook point of a model by its full name, and the attaching, selecting and scoped
// removal of hooks on them.
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "speechlens/hooks/hook_point.h"

namespace speechlens::hooks {

// Which hook points a hook goes to. A plain string is an exact name, or a glob when it holds
// '*', '?' or '['; regexes and predicates are explicit.
class HookSelector {
 public:
  HookSelector(std::string name_or_glob);  // NOLINT: implicit from strings is the point
  HookSelector(const char* name_or_glob) : HookSelector(std::string(name_or_glob)) {}
  static HookSelector exact(std::string name);
  static HookSelector glob(std::string pattern);
  static HookSelector regex(std::string pattern);
  static HookSelector predicate(std::function<bool(const std::string&)> pred,
                                std::string description = "predicate");

  bool matches(const std::string& name) const;
  const std::string& description() const { return text_; }
  bool is_exact() const { return kind_ == Kind::exact; }

 private:
  enum class Kind { exact, glob, regex, predicate };
  HookSelector(Kind kind, std::string text);
  Kind kind_;
  std::string text_;
  std::shared_ptr<std::regex> regex_;
  std::function<bool(const std::string&)> predicate_;
};

// Shell-style glob match ('*' matches any run of characters including '.', '?' one, and
// '[...]' a class).
bool glob_match(std::string_view pattern, std::string_view text);

class HookRegistry {
 public:
  HookRegistry() = default;
  HookRegistry(const HookRegistry&) = delete;
  HookRegistry& operator=(const HookRegistry&) = delete;

  // Model construction: creates the point (owned here, stable address) and returns it.
  HookPoint& create(const std::string& name, Stack stack = Stack::none, int64_t layer = -1);

  // Names in model order (the order the points were created, which is forward order).
  const std::vector<std::string>& names() const { return order_; }
  bool contains(const std::string& name) const { return points_.count(name) != 0; }
  HookPoint& at(const std::string& name);
  // Every name the selector matches, in model order. Throws NameError, with the nearest names,
  // when it matches nothing.
  std::vector<std::string> resolve(const HookSelector& selector) const;

  // Attaches `fn` at every point the selector matches; returns one id per attachment.
  std::vector<HookId> add(const HookSelector& selector, HookFn fn,
                          Direction direction = Direction::forward, bool permanent = false);
  void remove(HookId id);
  void remove(const std::vector<HookId>& ids);
  // Removes every non-permanent hook (and the permanent ones when asked).
  void reset(bool including_permanent = false);
  size_t hook_count() const { return owners_.size(); }
  bool has_backward_hooks() const { return backward_count_ > 0; }
  // Names of the points that currently have a hook attached, in model order.
  std::vector<std::string> active_names() const;

  RunState& run_state() { return run_; }
  const RunState& run_state() const { return run_; }

  // The closest names to `name` by edit distance, for error messages.
  std::vector<std::string> suggest(const std::string& name, size_t count = 5) const;

 private:
  struct Owner {
    HookPoint* point;
    bool permanent;
    Direction direction;
  };
  std::map<std::string, std::unique_ptr<HookPoint>> points_;
  std::vector<std::string> order_;
  std::map<HookId, Owner> owners_;
  HookId next_id_ = 1;
  size_t backward_count_ = 0;
  RunState run_;
};

// Removes exactly the hooks added through it when it goes out of scope, also when the forward
// it guarded threw.
class HookScope {
 public:
  explicit HookScope(HookRegistry& registry) : registry_(&registry) {}
  ~HookScope() { release(); }
  HookScope(HookScope&& other) noexcept;
  HookScope& operator=(HookScope&& other) noexcept;
  HookScope(const HookScope&) = delete;
  HookScope& operator=(const HookScope&) = delete;

  HookScope& add(const HookSelector& selector, HookFn fn, Direction direction = Direction::forward);
  HookScope& add_backward(const HookSelector& selector, HookFn fn) {
    return add(selector, std::move(fn), Direction::backward);
  }
  // Removes the scope's hooks now.
  void release();
  const std::vector<HookId>& ids() const { return ids_; }

 private:
  HookRegistry* registry_;
  std::vector<HookId> ids_;
};

}  // namespace speechlens::hooks

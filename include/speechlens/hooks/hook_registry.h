#pragma once
// Every hook point of a model by its full name, and the attaching, selecting and scoped
// removal of hooks on them.
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "speechlens/hooks/hook_point.h"

namespace speechlens::hooks {

// Which hook points a hook goes to. A plain string is an exact name, or a glob when it holds
// '*', '?' or '['; regexes, predicates and lists are explicit. A list selects the union of
// its members, and every member must match something.
class HookSelector {
 public:
  HookSelector(std::string name_or_glob);  // NOLINT: implicit from strings is the point
  HookSelector(const char* name_or_glob) : HookSelector(std::string(name_or_glob)) {}
  HookSelector(std::vector<std::string> names_or_globs);  // NOLINT: a list of names or globs
  static HookSelector exact(std::string name);
  static HookSelector glob(std::string pattern);
  static HookSelector regex(std::string pattern);
  static HookSelector predicate(std::function<bool(const std::string&)> pred,
                                std::string description = "predicate");
  static HookSelector any_of(std::vector<HookSelector> members);

  bool matches(const std::string& name) const;
  const std::string& description() const { return text_; }
  bool is_exact() const { return kind_ == Kind::exact; }
  bool is_list() const { return kind_ == Kind::list; }
  const std::vector<HookSelector>& members() const { return members_; }

 private:
  enum class Kind { exact, glob, regex, predicate, list };
  HookSelector(Kind kind, std::string text);
  Kind kind_;
  std::string text_;
  std::shared_ptr<std::regex> regex_;
  std::function<bool(const std::string&)> predicate_;
  std::vector<HookSelector> members_;
};

// Shell-style glob match ('*' matches any run of characters including '.', '?' one, and
// '[...]' a class).
bool glob_match(std::string_view pattern, std::string_view text);

// Where a hook is attached, for listings.
struct HookInfo {
  HookId id;
  std::string point;
  Direction direction;
  bool permanent;
};

// Every hook point of one model, and every hook attached through it. Thread-safe: hooks may be
// added and removed while other threads run the model (a firing already under way finishes
// with the hooks it started with, minus those removed meanwhile).
class HookRegistry {
 public:
  HookRegistry() = default;
  HookRegistry(const HookRegistry&) = delete;
  HookRegistry& operator=(const HookRegistry&) = delete;

  // Model construction: creates the point (owned here, stable address) and returns it. `axes`
  // lists the activation's time axes and their units; by default a point of a stack has one,
  // dim 1, in the stack's unit (default_unit).
  HookPoint& create(const std::string& name, Stack stack = Stack::none, int64_t layer = -1,
                    std::optional<std::vector<TimeAxis>> axes = std::nullopt);
  // Points added after construction (an SAE spliced at a hook adds its own), listed right
  // after `after` (or at the end). destroy() removes one again; it must have no hooks.
  HookPoint& create_after(const std::string& after, const std::string& name, Stack stack, int64_t layer,
                          std::vector<TimeAxis> axes);
  void destroy(const std::string& name);

  // Names in model order (the order a forward visits them).
  std::vector<std::string> names() const;
  size_t size() const;
  bool contains(const std::string& name) const;
  HookPoint& at(const std::string& name) const;
  // Every name the selector matches, in model order. Throws NameError, with the nearest names,
  // when it (or a member of a list) matches nothing.
  std::vector<std::string> resolve(const HookSelector& selector) const;

  // Attaches `fn` at every point the selector matches; returns one id per attachment.
  std::vector<HookId> add(const HookSelector& selector, HookFn fn,
                          Direction direction = Direction::forward, bool permanent = false);
  void remove(HookId id);
  void remove(const std::vector<HookId>& ids);
  // Removes the hooks at the points `where` selects (every point when unset), in one direction
  // or both, permanent ones only when asked; returns how many were removed.
  size_t remove_where(const std::optional<HookSelector>& where, std::optional<Direction> direction,
                      bool including_permanent);
  // Removes every non-permanent hook (and the permanent ones when asked).
  void reset(bool including_permanent = false) { remove_where(std::nullopt, std::nullopt, including_permanent); }
  size_t hook_count() const;
  bool has_backward_hooks() const;
  // Names of the points that currently have a hook attached, in model order.
  std::vector<std::string> active_names() const;
  // Every attached hook, in model order of its point.
  std::vector<HookInfo> list() const;

  // The closest names to `name` by edit distance, for error messages.
  std::vector<std::string> suggest(const std::string& name, size_t count = 5) const;
  // The unit of a stack's positions: "encoder", "decoder" / "lm" tokens.
  static std::string default_unit(Stack stack);

 private:
  struct Owner {
    HookPoint* point;
    std::shared_ptr<HookEntry> entry;
  };
  std::vector<std::string> resolve_locked(const HookSelector& selector) const;
  std::vector<std::string> suggest_locked(const std::string& name, size_t count) const;
  HookPoint& insert_locked(size_t position, const std::string& name, Stack stack, int64_t layer,
                           std::vector<TimeAxis> axes);

  mutable std::recursive_mutex mutex_;
  std::map<std::string, std::unique_ptr<HookPoint>> points_;
  std::vector<std::string> order_;
  std::map<HookId, Owner> owners_;
  HookId next_id_ = 1;
  size_t next_index_ = 0;
  size_t backward_count_ = 0;
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

#include "speechlens/hooks/hook_registry.h"

#include <fmt/format.h>

#include <algorithm>

#include "speechlens/util/error.h"

namespace speechlens::hooks {

bool glob_match(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0, star_p = std::string_view::npos, star_t = 0;
  auto class_match = [&](size_t& pi, char c) {
    // pattern[pi] == '['; advances pi past ']' and returns whether c is in the class.
    size_t i = pi + 1;
    bool negate = i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^');
    if (negate) ++i;
    bool found = false;
    size_t first = i;
    for (; i < pattern.size() && (pattern[i] != ']' || i == first); ++i) {
      if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
        if (pattern[i] <= c && c <= pattern[i + 2]) found = true;
        i += 2;
      } else if (pattern[i] == c) {
        found = true;
      }
    }
    pi = i + 1;
    return found != negate;
  };
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_p = p++;
      star_t = t;
      continue;
    }
    bool matched = false;
    size_t next = p + 1;
    if (p < pattern.size()) {
      if (pattern[p] == '?') {
        matched = true;
      } else if (pattern[p] == '[') {
        next = p;
        matched = class_match(next, text[t]);
      } else {
        matched = pattern[p] == text[t];
      }
    }
    if (matched) {
      p = next;
      ++t;
    } else if (star_p != std::string_view::npos) {  // let the last '*' swallow one more char
      p = star_p + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

namespace {
bool has_glob_syntax(const std::string& text) { return text.find_first_of("*?[") != std::string::npos; }
}  // namespace

// The kind is decided before the string is moved into place (argument evaluation order is
// unspecified, so the two must not share one call).
HookSelector::HookSelector(std::string name_or_glob)
    : kind_(has_glob_syntax(name_or_glob) ? Kind::glob : Kind::exact), text_(std::move(name_or_glob)) {}

HookSelector::HookSelector(std::vector<std::string> names_or_globs) : kind_(Kind::list) {
  for (auto& name : names_or_globs) members_.emplace_back(std::move(name));
  for (size_t i = 0; i < members_.size(); ++i) text_ += (i ? ", " : "") + members_[i].description();
  text_ = "[" + text_ + "]";
}

HookSelector::HookSelector(Kind kind, std::string text) : kind_(kind), text_(std::move(text)) {
  if (kind_ == Kind::regex) {
    try {
      regex_ = std::make_shared<std::regex>(text_, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw InvalidInput(fmt::format("invalid hook-name regex '{}': {}", text_, e.what()));
    }
  }
}

HookSelector HookSelector::exact(std::string name) { return {Kind::exact, std::move(name)}; }
HookSelector HookSelector::glob(std::string pattern) { return {Kind::glob, std::move(pattern)}; }
HookSelector HookSelector::regex(std::string pattern) { return {Kind::regex, std::move(pattern)}; }
HookSelector HookSelector::predicate(std::function<bool(const std::string&)> pred,
                                     std::string description) {
  HookSelector selector(Kind::predicate, std::move(description));
  selector.predicate_ = std::move(pred);
  return selector;
}

HookSelector HookSelector::any_of(std::vector<HookSelector> members) {
  HookSelector selector(Kind::list, "");
  for (size_t i = 0; i < members.size(); ++i) selector.text_ += (i ? ", " : "") + members[i].description();
  selector.text_ = "[" + selector.text_ + "]";
  selector.members_ = std::move(members);
  return selector;
}

bool HookSelector::matches(const std::string& name) const {
  switch (kind_) {
    case Kind::exact: return name == text_;
    case Kind::glob: return glob_match(text_, name);
    case Kind::regex: return std::regex_search(name, *regex_);
    case Kind::predicate: return predicate_(name);
    case Kind::list:
      for (const auto& member : members_) {
        if (member.matches(name)) return true;
      }
      return false;
  }
  return false;
}

std::string HookRegistry::default_unit(Stack stack) {
  switch (stack) {
    case Stack::encoder: return "encoder";
    case Stack::decoder: return "decoder";
    case Stack::lm: return "lm";
    case Stack::none: break;
  }
  return "";
}

HookPoint& HookRegistry::insert_locked(size_t position, const std::string& name, Stack stack, int64_t layer,
                                       std::vector<TimeAxis> axes) {
  auto [it, inserted] = points_.try_emplace(name, nullptr);
  if (!inserted) throw Error(fmt::format("hook point '{}' created twice", name));
  it->second = std::make_unique<HookPoint>(name, stack, layer, std::move(axes), next_index_++, this);
  order_.insert(order_.begin() + static_cast<std::ptrdiff_t>(position), name);
  return *it->second;
}

HookPoint& HookRegistry::create(const std::string& name, Stack stack, int64_t layer,
                                std::optional<std::vector<TimeAxis>> axes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<TimeAxis> time_axes;
  if (axes) {
    time_axes = std::move(*axes);
  } else if (stack != Stack::none) {
    time_axes.push_back({1, default_unit(stack)});
  }
  return insert_locked(order_.size(), name, stack, layer, std::move(time_axes));
}

HookPoint& HookRegistry::create_after(const std::string& after, const std::string& name, Stack stack, int64_t layer,
                                      std::vector<TimeAxis> axes) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  size_t position = order_.size();
  if (!after.empty()) {
    auto it = std::find(order_.begin(), order_.end(), after);
    if (it == order_.end()) resolve_locked(HookSelector::exact(after));  // throws with suggestions
    // After `after` and the points already inserted after it (which extend its name).
    position = static_cast<size_t>(it - order_.begin()) + 1;
    while (position < order_.size() && order_[position].rfind(after + ".", 0) == 0) ++position;
  }
  return insert_locked(position, name, stack, layer, std::move(axes));
}

void HookRegistry::destroy(const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  auto it = points_.find(name);
  if (it == points_.end()) return;
  if (it->second->has_hooks()) {
    throw InvalidInput(fmt::format("hook point '{}' still has hooks attached; remove them first", name));
  }
  order_.erase(std::find(order_.begin(), order_.end(), name));
  points_.erase(it);
}

std::vector<std::string> HookRegistry::names() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return order_;
}

size_t HookRegistry::size() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return next_index_;
}

bool HookRegistry::contains(const std::string& name) const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return points_.count(name) != 0;
}

HookPoint& HookRegistry::at(const std::string& name) const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  auto it = points_.find(name);
  if (it == points_.end()) resolve_locked(HookSelector::exact(name));  // throws with suggestions
  return *it->second;
}

namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::vector<std::string> HookRegistry::suggest(const std::string& name, size_t count) const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return suggest_locked(name, count);
}

std::vector<std::string> HookRegistry::suggest_locked(const std::string& name, size_t count) const {
  // Globs are compared with their wildcards replaced by a typical layer index; very long names
  // are compared by their first 256 characters (the distance is quadratic).
  std::string probe = name.substr(0, 256);
  for (char& c : probe) {
    if (c == '*' || c == '?') c = '0';
  }
  std::vector<std::pair<size_t, std::string>> scored;
  scored.reserve(order_.size());
  for (const auto& candidate : order_) scored.emplace_back(edit_distance(probe, candidate), candidate);
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && out.size() < count; ++i) out.push_back(scored[i].second);
  return out;
}

std::vector<std::string> HookRegistry::resolve(const HookSelector& selector) const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return resolve_locked(selector);
}

std::vector<std::string> HookRegistry::resolve_locked(const HookSelector& selector) const {
  std::vector<std::string> matched;
  if (selector.is_list()) {
    if (selector.members().empty()) throw InvalidInput("an empty list of hook names selects nothing");
    std::vector<bool> taken(order_.size(), false);
    for (const auto& member : selector.members()) {
      auto names = resolve_locked(member);  // every member must match something
      for (const auto& name : names) {
        const auto pos = static_cast<size_t>(std::find(order_.begin(), order_.end(), name) - order_.begin());
        taken[pos] = true;
      }
    }
    for (size_t i = 0; i < order_.size(); ++i) {
      if (taken[i]) matched.push_back(order_[i]);
    }
    return matched;
  }
  if (selector.is_exact()) {
    if (points_.count(selector.description())) matched.push_back(selector.description());
  } else {
    for (const auto& name : order_) {
      if (selector.matches(name)) matched.push_back(name);
    }
  }
  if (matched.empty()) {
    auto near = suggest_locked(selector.description(), 5);
    std::string list;
    for (const auto& n : near) list += "\n  " + n;
    std::string shown = selector.description();
    if (shown.size() > 200) shown = shown.substr(0, 200) + "...";
    throw NameError(fmt::format(
        "no hook point matches '{}' ({} points in this model; model.hook_names() lists them). "
        "Nearest names:{}",
        shown, order_.size(), list));
  }
  return matched;
}

std::vector<HookId> HookRegistry::add(const HookSelector& selector, HookFn fn, Direction direction,
                                      bool permanent) {
  if (!fn) throw InvalidInput("a hook must be callable");
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<HookId> ids;
  for (const auto& name : resolve_locked(selector)) {
    HookPoint& point = *points_.at(name);
    HookId id = next_id_++;
    auto entry = std::make_shared<HookEntry>(id, fn, direction, permanent);
    point.attach(entry);
    owners_.emplace(id, Owner{&point, std::move(entry)});
    if (direction == Direction::backward) ++backward_count_;
    ids.push_back(id);
  }
  return ids;
}

void HookRegistry::remove(HookId id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  auto it = owners_.find(id);
  if (it == owners_.end()) return;  // already removed (e.g. by reset): removal is idempotent
  it->second.point->detach(id);
  if (it->second.entry->direction == Direction::backward) --backward_count_;
  owners_.erase(it);
}

void HookRegistry::remove(const std::vector<HookId>& ids) {
  for (HookId id : ids) remove(id);
}

size_t HookRegistry::remove_where(const std::optional<HookSelector>& where, std::optional<Direction> direction,
                                  bool including_permanent) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<HookId> doomed;
  for (const auto& [id, owner] : owners_) {
    if (!including_permanent && owner.entry->permanent) continue;
    if (direction && owner.entry->direction != *direction) continue;
    if (where && !where->matches(owner.point->name())) continue;
    doomed.push_back(id);
  }
  remove(doomed);
  return doomed.size();
}

size_t HookRegistry::hook_count() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return owners_.size();
}

bool HookRegistry::has_backward_hooks() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  return backward_count_ > 0;
}

std::vector<std::string> HookRegistry::active_names() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<std::string> active;
  for (const auto& name : order_) {
    if (points_.at(name)->has_hooks()) active.push_back(name);
  }
  return active;
}

std::vector<HookInfo> HookRegistry::list() const {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<HookInfo> out;
  for (const auto& name : order_) {
    for (const auto& entry : points_.at(name)->entries()) {
      out.push_back({entry->id, name, entry->direction, entry->permanent});
    }
  }
  return out;
}

HookScope::HookScope(HookScope&& other) noexcept
    : registry_(other.registry_), ids_(std::move(other.ids_)) {
  other.ids_.clear();
}

HookScope& HookScope::operator=(HookScope&& other) noexcept {
  if (this != &other) {
    release();
    registry_ = other.registry_;
    ids_ = std::move(other.ids_);
    other.ids_.clear();
  }
  return *this;
}

HookScope& HookScope::add(const HookSelector& selector, HookFn fn, Direction direction) {
  auto added = registry_->add(selector, std::move(fn), direction, /*permanent=*/false);
  ids_.insert(ids_.end(), added.begin(), added.end());
  return *this;
}

void HookScope::release() {
  if (registry_) registry_->remove(ids_);
  ids_.clear();
}

}  // namespace speechlens::hooks

#include "speechlens/models/hooked_model.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace speechlens::models {

void HookedModel::to(std::optional<at::Device> device, std::optional<at::ScalarType> dtype) {
  visit([&](at::Tensor& t) {
    const bool floating = at::isFloatingType(t.scalar_type());
    t = t.to(device.value_or(t.device()), floating ? dtype.value_or(t.scalar_type()) : t.scalar_type());
  });
  settle_placement();
}

at::Tensor HookedModel::enter_graph(at::Tensor input) const {
  if (registry_.has_backward_hooks() && c10::GradMode::is_enabled() && !input.requires_grad() &&
      at::isFloatingType(input.scalar_type())) {
    return input.detach().requires_grad_(true);
  }
  return input;
}

void HookedModel::settle_placement() {
  bool found = false;
  visit([&](at::Tensor& t) {
    if (!found && at::isFloatingType(t.scalar_type())) {
      device_ = t.device();
      dtype_ = t.scalar_type();
      found = true;
    }
  });
}

}  // namespace speechlens::models

#include "runtime/error.h"

namespace e3 {

const char* code_name(Code code) {
  switch (code) {
    case Code::InvalidArgument: return "ERR_INVALID_ARGUMENT";
    case Code::BadCheckpoint: return "ERR_BAD_CHECKPOINT";
    case Code::UnsupportedModel: return "ERR_UNSUPPORTED_MODEL";
    case Code::DraftMismatch: return "ERR_DRAFT_MISMATCH";
    case Code::OutOfMemory: return "ERR_OUT_OF_MEMORY";
    case Code::NoCudaDevice: return "ERR_NO_CUDA_DEVICE";
    case Code::Aborted: return "ERR_ABORTED";
    case Code::Cuda: return "ERR_CUDA";
    case Code::Internal: return "ERR_INTERNAL";
  }
  return "ERR_INTERNAL";
}

}  // namespace e3

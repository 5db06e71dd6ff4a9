// gpufrac serve logs the way the node agent does: one logfmt line per event on stderr
// (node/log.h), e.g. ts=2026-11-25T03:01:02.345Z event=replica.ready model=chat port=40123
#pragma once

#include "node/log.h"

namespace gpufrac::serve {

using node::LogEvent;
using node::LogFields;

}  // namespace gpufrac::serve

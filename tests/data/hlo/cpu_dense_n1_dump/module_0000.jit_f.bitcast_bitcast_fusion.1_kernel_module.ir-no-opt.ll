define ptr @bitcast_bitcast_fusion.1(ptr %0) #0 {
define internal void @bitcast_bitcast_fusion.1_wrapped(ptr noalias align 64 dereferenceable(512) %0, ptr noalias align 64 dereferenceable(512) %1, ptr noalias align 64 dereferenceable(512) %2, i64 %3, i64 %4, i64 %5) #1 {

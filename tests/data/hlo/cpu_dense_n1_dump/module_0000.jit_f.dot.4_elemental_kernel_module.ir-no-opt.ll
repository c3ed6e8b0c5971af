define ptr @dot.4_kernel(ptr %0) #0 {
define internal void @col_major_gemv_F32_8_8_128_64_1(ptr %0, ptr %1, ptr %2, i64 %3) #1 {

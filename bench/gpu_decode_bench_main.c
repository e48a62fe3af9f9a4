/* Entry point of the GPU decode benchmark (the body lives in gpu_decode_bench.cu so that it can
 * launch its own weight-initialisation kernels; a C main keeps Bazel's cc_binary simple). */
int gpu_decode_bench_main(int argc, char **argv);

int main(int argc, char **argv)
{
    return gpu_decode_bench_main(argc, argv);
}

# The model repository as an OCI image: what the Deployment's init container
# copies into each pod (deploy/k8s/base) and what KServe mounts as a modelcar
# (storageUri: oci://...; deploy/kserve). Built from `slim build` output:
#
#   docker build -f deploy/models.Dockerfile -t registry.example.com/slimserve-models:spam-1 models/
#
# The build context is models/ itself (the repository's .dockerignore keeps models/ out of the
# server image).
#   docker push registry.example.com/slimserve-models:spam-1
#
# busybox: the init container runs `cp`, and KServe's modelcar needs a shell.
FROM busybox:1.37
# models/<model>/<variant>/{model.onnx, tokenizer.json, tokenizer_config.json, manifest.json, ...}
# and models/<model>/report.json (whose recommendation is the default variant).
# Owned by the server's uid 10001, so readable whatever the build machine's umask was.
COPY --chown=10001:10001 . /models/
USER 10001:10001

// Gradient checks: the central finite difference that analytic gradients are compared against.

/**
 * (loss(v[i] + eps) - loss(v[i] - eps)) / 2 eps, perturbing entry i of `values` in place (the
 * tensor the loss is computed from) and restoring it afterwards.
 */
export async function centralDifference(values: { [i: number]: number }, i: number, eps: number, lossAt: () => Promise<number>): Promise<number> {
  const orig = values[i]!;
  values[i] = orig + eps;
  const up = await lossAt();
  values[i] = orig - eps;
  const down = await lossAt();
  values[i] = orig;
  return (up - down) / (2 * eps);
}

"""The SimpleITK registration the benchmarks compare against, set up in one place.

A textbook multi-resolution set-up: shrink factors 4-2-1 with smoothing sigmas 2-1-0
(voxels), linear interpolation, regular-step gradient descent (step 1 -> 1e-4 physical
units, relaxation 0.5, at most 200 iterations per level) with scales from the physical
shift, and the metric on every voxel or on a fixed random share of each level.
"""

from __future__ import annotations


def registration_method(sitk, metric: str, sampling: float, seed: int):
    """A configured ``sitk.ImageRegistrationMethod``.

    Parameters
    ----------
    sitk : module
        SimpleITK (imported by the caller, which decides what to do without it).
    metric : {"correlation", "mi"}
        Normalised correlation, or Mattes mutual information with 32 bins.
    sampling : float
        Share of each level's voxels in the metric (1: every voxel).
    seed : int
        Seed of the random share, so every iteration uses the same samples.
    """
    method = sitk.ImageRegistrationMethod()
    if metric == "mi":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    else:
        method.SetMetricAsCorrelation()
    if sampling >= 1:
        method.SetMetricSamplingStrategy(method.NONE)
    else:  # a fixed random subset of each level: the same samples at every iteration
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(sampling, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=200,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()  # sigmas in voxels
    return method

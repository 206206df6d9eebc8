"""A small real simulation: an ensemble of 2-D random walkers in a harmonic trap.

Each walker takes Gaussian steps of width sqrt(2 D dt) and feels a restoring force -k x.
The mean squared displacement saturates at 2 D / k (per dimension), which analyse.py checks.
"""

import click
import numpy as np

import gittrack


@gittrack.command()
@click.option("--walkers", type=int, default=200, help="Number of independent walkers.")
@click.option("--steps", type=int, default=2000, help="Time steps per walker.")
@click.option("--dt", type=float, default=0.01, help="Time step.")
@click.option("--diffusion", type=float, default=1.0, help="Diffusion constant D.")
@click.option("--stiffness", type=float, default=1.0, help="Trap stiffness k.")
@click.option("--seed", type=int, default=0, help="Random seed.")
def main(walkers, steps, dt, diffusion, stiffness, seed):
    """Simulate the walkers and return their mean squared displacement over time."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((walkers, 2))
    msd = np.empty(steps)
    width = np.sqrt(2 * diffusion * dt)
    for step in range(steps):
        pos += -stiffness * pos * dt + rng.normal(0.0, width, size=pos.shape)
        msd[step] = np.mean(np.sum(pos**2, axis=1))
    plateau = float(msd[steps // 2 :].mean())
    print(f"plateau of the MSD: {plateau:.4f} (theory {2 * diffusion / stiffness:.4f})")
    return {
        "msd": msd,  # an array: stored as an output through DVC
        "plateau": plateau,  # scalars: metrics in run.toml
        "final_spread": float(pos.std()),
    }


if __name__ == "__main__":
    main()

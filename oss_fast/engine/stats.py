"""What a search cost: model calls and rows, seconds per phase, peak memory."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SearchStats:
    """What a search cost. Seconds are wall-clock; model seconds are spent inside model calls."""

    teacher_calls: int = 0
    teacher_rows: int = 0
    candidate_calls: int = 0
    candidate_rows: int = 0
    padded_rows: int = 0
    rows_per_level: list = field(default_factory=list)
    seconds_teacher: float = 0.0
    seconds_candidates: float = 0.0
    seconds_costs: float = 0.0
    seconds_dp: float = 0.0
    seconds_total: float = 0.0
    model_seconds: float = 0.0
    peak_memory_bytes: int = 0
    memory_scope: str = ""
    cost_backend: str = ""
    chunk: int = 0
    samples: int = 0
    oom_backoffs: int = 0
    resumed_from: str = ""
    world_size: int = 1
    published_rows: int = 0  # what the published search spends on the same inputs: N (K + 1) per sample
    rows_per_pass: list = field(default_factory=list)  # refinement: model rows of the coarse pass, then each band pass
    refine_stride: int = 0  # refinement: the coarse pass's stride and the bands' half-width
    refine_band: int = 0
    velocity_cache_hits: int = 0  # refinement: candidate rows answered from the cache
    refine_stopped_by_budget: bool = False  # refinement: a band pass would have passed the row budget
    validation_rows: int = 0  # the multistep default's guard: rows of its teacher and candidates (in candidate_rows)

    def summary(self) -> str:
        extra = "".join([f"; {self.world_size} ranks (this rank's calls)" if self.world_size > 1 else "",
                         f"; {self.oom_backoffs} out-of-memory back-offs to chunk {self.chunk}" if self.oom_backoffs else "",
                         f"; resumed after {self.resumed_from}" if self.resumed_from else ""])
        spent = self.teacher_rows + self.candidate_rows
        versus = (f" = {spent / self.published_rows:.0%} of the published search's {self.published_rows}"
                  if self.published_rows else "")
        passes = (f"; refinement passes {self.rows_per_pass} rows"
                  f"{' (stopped at the row budget)' if self.refine_stopped_by_budget else ''}"
                  if self.rows_per_pass else "")
        validation = f" ({self.validation_rows} of them validation)" if self.validation_rows else ""
        return (f"model rows {self.teacher_rows} teacher + {self.candidate_rows} candidates{validation}{versus}{passes}; "
                f"{self.teacher_calls} teacher + {self.candidate_calls} candidate calls ({self.padded_rows} padding rows); "
                f"{self.seconds_total:.2f} s total = teacher {self.seconds_teacher:.2f} + candidates "
                f"{self.seconds_candidates:.2f} + costs {self.seconds_costs:.2f} + DP {self.seconds_dp:.2f}; "
                f"model calls {self.model_seconds:.2f} s; peak memory {self.peak_memory_bytes / 2**20:.0f} MiB "
                f"({self.memory_scope}){extra}")

"""Holt-Winters forecasting with a deviation band, as rrdtool's HWPREDICT
and DEVPREDICT (Brutlag, "Aberrant Behavior Detection in Time Series for
Network Monitoring", LISA 2000), on the 5-minute series.

    prediction  = level + trend + seasonal[t - season]
    level       = alpha (y - seasonal[t - season]) + (1 - alpha) (level + trend)
    trend       = beta (level - previous level) + (1 - beta) trend
    seasonal[t] = gamma (y - level) + (1 - gamma) seasonal[t - season]
    deviation[t] = gamma |y - prediction| + (1 - gamma) deviation[t - season]

A point is outside the band when |y - prediction| > DELTA deviation[t -
season] (Brutlag suggests 2 to 3; with 2, three points in a row of plain
3 % noise alarmed about once a day in tests/test_history_anomaly.py);
CONSECUTIVE such points in a row are an anomaly (rrdtool's FAILURES
counts a window; a run is what an operator reads as "it has been odd for
15 minutes").  The first season only learns (seasonal = y - its mean,
deviation from its spread); no alarm until a second season has been seen.
The band never gets narrower than FLOOR of the level: a quiet series with
almost no noise must not alarm on a byte more.
"""


STEP_S = 300
SEASON = 288                  # a day of 5-minute points
ALPHA, BETA, GAMMA = 0.1, 0.0035, 0.1   # rrdtool's documented examples
DELTA = 3.0
CONSECUTIVE = 3
FLOOR = 0.05


class Anomaly:
    def __init__(self, series, start_s, end_s, peak, expected):
        self.series = series
        self.start_s = start_s        # the first point outside the band
        self.end_s = end_s            # the last (so far)
        self.peak = peak              # the largest value seen in it
        self.expected = expected      # the prediction at the peak


class HoltWinters:
    def __init__(self, season=SEASON, alpha=ALPHA, beta=BETA, gamma=GAMMA, delta=DELTA,
                 consecutive=CONSECUTIVE):
        self.season, self.alpha, self.beta, self.gamma = season, alpha, beta, gamma
        self.delta, self.consecutive = delta, consecutive
        self.level = 0.0
        self.trend = 0.0
        self.seasonal = []
        self.deviation = []
        self.learning = []
        self.seen = 0
        self.outside = 0          # points outside the band in a row

    def update(self, value):
        """Feeds one point; returns (prediction, low, high, outside) once
        trained, None while it learns the first season."""
        self.seen += 1
        if len(self.seasonal) < self.season:
            self.learning.append(value)
            if len(self.learning) == self.season:
                self._initialise()
            return None
        index = (self.seen - 1) % self.season
        seasonal, deviation = self.seasonal[index], self.deviation[index]
        prediction = self.level + self.trend + seasonal
        width = max(self.delta * deviation, FLOOR * abs(self.level))
        outside = abs(value - prediction) > width
        trained = self.seen > 2 * self.season
        # an anomaly teaches the model less: the band must not learn a spike
        weight = 0.0 if (outside and trained) else 1.0
        previous = self.level
        self.level = self.alpha * weight * (value - seasonal) + (1 - self.alpha * weight) * (
            self.level + self.trend)
        self.trend = self.beta * (self.level - previous) + (1 - self.beta) * self.trend
        self.seasonal[index] = (self.gamma * weight * (value - self.level)
                                + (1 - self.gamma * weight) * seasonal)
        self.deviation[index] = (self.gamma * abs(value - prediction)
                                 + (1 - self.gamma) * deviation)
        self.outside = self.outside + 1 if (outside and trained) else 0
        return prediction, prediction - width, prediction + width, outside and trained

    def _initialise(self):
        mean = sum(self.learning) / len(self.learning)
        self.level, self.trend = mean, 0.0
        self.seasonal = [value - mean for value in self.learning]
        steps = [abs(b - a) for a, b in zip(self.learning, self.learning[1:])]
        spread = sum(steps) / len(steps) if steps else 0.0
        self.deviation = [spread] * self.season
        self.learning = []

    @property
    def anomalous(self):
        return self.outside >= self.consecutive


class Detector:
    """One HoltWinters per series (an interface's bytes per 5 minutes),
    the anomalies found, bounded (the last MAX_ANOMALIES)."""

    MAX_ANOMALIES = 100
    MAX_SERIES = 64

    def __init__(self, **settings):
        self.settings = settings
        self.models = {}
        self.anomalies = []
        self.last_point_s = {}

    def feed(self, series, time_s, value):
        """One point of a series (in time order; a point not after the last
        is ignored); returns the Anomaly it starts or extends, or None."""
        if time_s <= self.last_point_s.get(series, -1):
            return None
        model = self.models.get(series)
        if model is None:
            if len(self.models) >= self.MAX_SERIES:
                return None
            model = self.models[series] = HoltWinters(**self.settings)
        self.last_point_s[series] = time_s
        result = model.update(float(value))
        if result is None or not model.anomalous:
            return None
        prediction = result[0]
        current = next((a for a in reversed(self.anomalies) if a.series == series), None)
        start = time_s - (model.consecutive - 1) * STEP_S
        if current and current.end_s >= time_s - STEP_S:
            current.end_s = time_s
            if value > current.peak:
                current.peak, current.expected = value, prediction
            return current
        anomaly = Anomaly(series, start, time_s, value, prediction)
        self.anomalies.append(anomaly)
        del self.anomalies[:-self.MAX_ANOMALIES]
        return anomaly

# R surveillance on the series benchmarks/market_analysis.py wrote (one run, timed inside R).
#   Rscript benchmarks/market_vs_r.R WORKDIR H ODDS_RATIO
suppressMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
work <- args[1]; h <- as.numeric(args[2]); or <- as.numeric(args[3])
cin <- read.csv(file.path(work, "cusum_in.csv"), stringsAsFactors = FALSE)
dBinom <- function(y, size, mu, log = FALSE) dbinom(y[1, , drop = FALSE], size = size, prob = mu[1, , drop = FALSE], log = log)
t0 <- proc.time()[["elapsed"]]
out <- list()
for (u in unique(cin$unit)) {
  d <- cin[cin$unit == u, ]
  d <- d[order(d$week), ]
  p1 <- or * d$p0 / (1 - d$p0 + or * d$p0)
  st <- sts(observed = cbind(d$x, d$n - d$x), populationFrac = cbind(d$n, d$n), start = c(2025, 1), frequency = 52)
  res <- categoricalCUSUM(st, control = list(range = seq_len(nrow(d)), h = h, pi0 = rbind(d$p0, 1 - d$p0),
                                             pi1 = rbind(p1, 1 - p1), dfun = dBinom, ret = "value"))
  out[[u]] <- data.frame(week = d$week, unit = u, alarm = as.integer(alarms(res)[, 1]))
}
t_cusum <- proc.time()[["elapsed"]] - t0
write.csv(do.call(rbind, out), file.path(work, "cusum_out.csv"), row.names = FALSE)
ein <- read.csv(file.path(work, "ears_in.csv"), stringsAsFactors = FALSE)
units <- unique(ein$unit)
obs <- sapply(units, function(u) ein$observed[ein$unit == u][order(ein$day[ein$unit == u])])
s <- sts(observed = obs, start = c(2025, 1), frequency = 365)
t0 <- proc.time()[["elapsed"]]
rows <- list()
for (m in c("C1", "C2", "C3")) {
  res <- earsC(s, control = list(method = m, baseline = 7))
  days <- res@control$range
  for (j in seq_along(units)) rows[[length(rows) + 1]] <- data.frame(method = m, unit = units[j], day = days,
                                                                     alarm = as.integer(alarms(res)[, j]))
}
t_ears <- proc.time()[["elapsed"]] - t0
write.csv(do.call(rbind, rows), file.path(work, "ears_out.csv"), row.names = FALSE)
cat(sprintf('{"cusum_s": %.4f, "ears_s": %.4f, "version": "%s; surveillance %s"}\n', t_cusum, t_ears,
            R.version.string, as.character(packageVersion("surveillance"))))

package scorer_h2o3_mojo;

import hex.genmodel.easy.EasyPredictModelWrapper;
import hex.genmodel.easy.RowData;
import hex.genmodel.easy.exception.PredictException;

import java.util.stream.IntStream;

/**
 * Scores whole column batches for scorer_h2o3_mojo, so that Python crosses into the JVM once per
 * batch instead of once per row (a per-row call from Python costs more than scoring a small model).
 *
 * Rows go through EasyPredictModelWrapper, exactly as H2O's own scorers do, so categorical levels,
 * unknown levels and missing values are handled as H2O-3 handles them. Large batches are split into
 * chunks scored on the common fork-join pool; the wrapper keeps no per-row state, and H2O's REST
 * scorer shares one wrapper between request threads in the same way.
 */
public final class ColumnBatchScorer {
    private static final int CHUNK_ROWS = 1024;

    private final EasyPredictModelWrapper wrapper;
    private final String[] numericNames;
    private final String[] categoricalNames;

    public ColumnBatchScorer(EasyPredictModelWrapper wrapper, String[] numericNames, String[] categoricalNames) {
        this.wrapper = wrapper;
        this.numericNames = numericNames;
        this.categoricalNames = categoricalNames;
    }

    /**
     * The model's raw predictions (genmodel's score0 layout: label index then class probabilities
     * for classifiers, the value for regression), row-major: {@code rows * width} values.
     *
     * @param numbers one array per numeric column, in {@code numericNames} order; NaN is missing
     * @param levels one array per categorical column, in {@code categoricalNames} order; null is missing
     */
    public double[] predict(double[][] numbers, String[][] levels, int rows, int width) {
        double[] out = new double[rows * width];
        forEachChunk(rows, (start, end) -> {
            for (int r = start; r < end; r++) {
                double[] preds;
                try {
                    preds = wrapper.predictRaw(row(numbers, levels, r), 0.0);
                } catch (PredictException e) {
                    throw rowError(r, e);
                }
                if (preds.length < width) {
                    throw new IllegalStateException("row " + r + ": the model returned " + preds.length
                        + " values, expected " + width);
                }
                System.arraycopy(preds, 0, out, r * width, width);
            }
        });
        return out;
    }

    /** Shapley contributions, row-major: {@code rows * width} values, BiasTerm last in each row. */
    public float[] contributions(double[][] numbers, String[][] levels, int rows, int width) {
        float[] out = new float[rows * width];
        forEachChunk(rows, (start, end) -> {
            for (int r = start; r < end; r++) {
                float[] values;
                try {
                    values = wrapper.predictContributions(row(numbers, levels, r));
                } catch (PredictException e) {
                    throw rowError(r, e);
                }
                if (values.length != width) {
                    throw new IllegalStateException("row " + r + ": the model returned " + values.length
                        + " contributions, expected " + width);
                }
                System.arraycopy(values, 0, out, r * width, width);
            }
        });
        return out;
    }

    private RowData row(double[][] numbers, String[][] levels, int r) {
        RowData row = new RowData();
        for (int c = 0; c < numericNames.length; c++) {
            double value = numbers[c][r];
            if (!Double.isNaN(value)) {
                row.put(numericNames[c], value);
            }
        }
        for (int c = 0; c < categoricalNames.length; c++) {
            String value = levels[c][r];
            if (value != null) {
                row.put(categoricalNames[c], value);
            }
        }
        return row;
    }

    private static IllegalArgumentException rowError(int r, PredictException e) {
        return new IllegalArgumentException("row " + r + ": " + e.getMessage(), e);
    }

    @FunctionalInterface
    private interface ChunkScorer {
        void score(int start, int end);
    }

    private static void forEachChunk(int rows, ChunkScorer scorer) {
        int chunks = (rows + CHUNK_ROWS - 1) / CHUNK_ROWS;
        IntStream indices = IntStream.range(0, chunks);
        (chunks > 1 ? indices.parallel() : indices).forEach(chunk -> {
            int start = chunk * CHUNK_ROWS;
            scorer.score(start, Math.min(rows, start + CHUNK_ROWS));
        });
    }
}

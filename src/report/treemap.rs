//! Squarified treemap layout (Bruls, Huizing and van Wijk, 2000): rectangles with areas
//! proportional to the values, laid out in rows that keep them close to squares, so that sizes
//! can be compared by eye. Pure; the HTML report draws the result.

/// An axis-aligned rectangle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn area(&self) -> f64 {
        self.w * self.h
    }

    /// Width over height or height over width, whichever is at least 1.
    pub fn aspect(&self) -> f64 {
        if self.w <= 0.0 || self.h <= 0.0 {
            return f64::INFINITY;
        }
        (self.w / self.h).max(self.h / self.w)
    }
}

/// Lays out `values` in `bounds`. The result has one rectangle per value, in the order of
/// `values`; zero, negative and non-finite values get an empty rectangle.
pub fn squarify(values: &[f64], bounds: Rect) -> Vec<Rect> {
    let empty = Rect {
        x: bounds.x,
        y: bounds.y,
        w: 0.0,
        h: 0.0,
    };
    let mut out = vec![empty; values.len()];
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let total: f64 = values.iter().copied().filter(|v| positive(*v)).sum();
    if total <= 0.0 || bounds.area() <= 0.0 {
        return out;
    }
    // Largest first: the algorithm's row choice assumes decreasing areas.
    let mut order: Vec<usize> = (0..values.len()).filter(|&i| positive(values[i])).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let scale = bounds.area() / total;
    let areas: Vec<f64> = order.iter().map(|&i| values[i] * scale).collect();

    let mut free = bounds;
    let mut start = 0;
    while start < areas.len() {
        let side = free.w.min(free.h);
        let mut end = start + 1;
        while end < areas.len() && worst(&areas[start..=end], side) <= worst(&areas[start..end], side) {
            end += 1;
        }
        let row = &areas[start..end];
        let row_area: f64 = row.iter().sum();
        // The row runs along the shorter side: a column on the left when the free space is
        // wide, else a strip on top, laid out as a column of the transposed space.
        let column = free.w >= free.h;
        let space = if column { free } else { transpose(free) };
        let width = if space.h > 0.0 { row_area / space.h } else { 0.0 };
        let mut y = space.y;
        for (k, area) in row.iter().enumerate() {
            let h = if width > 0.0 { area / width } else { 0.0 };
            let cell = Rect {
                x: space.x,
                y,
                w: width,
                h,
            };
            out[order[start + k]] = if column { cell } else { transpose(cell) };
            y += h;
        }
        let rest = Rect {
            x: space.x + width,
            w: (space.w - width).max(0.0),
            ..space
        };
        free = if column { rest } else { transpose(rest) };
        start = end;
    }
    out
}

/// The same rectangle with the axes swapped.
fn transpose(r: Rect) -> Rect {
    Rect {
        x: r.y,
        y: r.x,
        w: r.h,
        h: r.w,
    }
}

/// The worst aspect ratio of a row of `areas` laid along a side of length `side`.
fn worst(areas: &[f64], side: f64) -> f64 {
    let sum: f64 = areas.iter().sum();
    if sum <= 0.0 || side <= 0.0 {
        return f64::INFINITY;
    }
    let max = areas.iter().copied().fold(f64::MIN, f64::max);
    let min = areas.iter().copied().fold(f64::MAX, f64::min);
    let s2 = side * side;
    (s2 * max / (sum * sum)).max(sum * sum / (s2 * min))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Rect = Rect {
        x: 10.0,
        y: 20.0,
        w: 600.0,
        h: 400.0,
    };

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
    }

    fn overlap(a: &Rect, b: &Rect) -> f64 {
        let w = (a.x + a.w).min(b.x + b.w) - a.x.max(b.x);
        let h = (a.y + a.h).min(b.y + b.h) - a.y.max(b.y);
        if w > 0.0 && h > 0.0 { w * h } else { 0.0 }
    }

    fn check_layout(values: &[f64]) -> Vec<Rect> {
        let rects = squarify(values, BOUNDS);
        assert_eq!(rects.len(), values.len());
        let total: f64 = values.iter().filter(|v| **v > 0.0).sum();
        for (v, r) in values.iter().zip(&rects) {
            let expected = if *v > 0.0 { v / total * BOUNDS.area() } else { 0.0 };
            assert!(
                close(r.area(), expected),
                "area {} for value {v}, expected {expected}",
                r.area()
            );
            assert!(
                r.x >= BOUNDS.x - 1e-9 && r.y >= BOUNDS.y - 1e-9,
                "{r:?} starts outside"
            );
            assert!(
                r.x + r.w <= BOUNDS.x + BOUNDS.w + 1e-6,
                "{r:?} ends right of the bounds"
            );
            assert!(
                r.y + r.h <= BOUNDS.y + BOUNDS.h + 1e-6,
                "{r:?} ends below the bounds"
            );
        }
        for i in 0..rects.len() {
            for j in i + 1..rects.len() {
                assert!(
                    overlap(&rects[i], &rects[j]) < 1e-6,
                    "{:?} overlaps {:?}",
                    rects[i],
                    rects[j]
                );
            }
        }
        rects
    }

    #[test]
    fn one_value_fills_the_bounds() {
        let r = check_layout(&[42.0])[0];
        assert!(close(r.x, BOUNDS.x) && close(r.y, BOUNDS.y), "{r:?}");
        assert!(close(r.w, BOUNDS.w) && close(r.h, BOUNDS.h), "{r:?}");
    }

    #[test]
    fn areas_are_proportional_and_nothing_overlaps() {
        check_layout(&[6.0, 6.0, 4.0, 3.0, 2.0, 2.0, 1.0]);
        check_layout(&[1.0, 1000.0, 3.0, 0.5, 77.0, 12.0, 12.0, 9.0, 1.0, 1.0, 1.0]);
        check_layout(&(1..=200).map(|i| (i * i % 97 + 1) as f64).collect::<Vec<_>>());
    }

    #[test]
    fn the_order_of_the_input_is_kept() {
        let rects = check_layout(&[1.0, 9.0]);
        assert!(rects[1].area() > rects[0].area());
    }

    #[test]
    fn equal_values_in_a_square_make_squares() {
        let square = Rect {
            x: 0.0,
            y: 0.0,
            w: 100.0,
            h: 100.0,
        };
        for r in squarify(&[1.0; 4], square) {
            assert!(close(r.w, 50.0) && close(r.h, 50.0), "{r:?}");
        }
    }

    #[test]
    fn rectangles_stay_close_to_squares() {
        // The paper's example: the worst aspect ratio stays small.
        let rects = check_layout(&[6.0, 6.0, 4.0, 3.0, 2.0, 2.0, 1.0]);
        let worst = rects.iter().map(Rect::aspect).fold(0.0, f64::max);
        assert!(worst < 3.0, "worst aspect ratio {worst}");
    }

    #[test]
    fn zero_negative_and_nan_values_get_nothing() {
        let rects = check_layout(&[0.0, 5.0, -3.0, 5.0]);
        assert_eq!(rects[0].area(), 0.0);
        assert_eq!(rects[2].area(), 0.0);
        let nan = squarify(&[f64::NAN, 1.0], BOUNDS);
        assert_eq!(nan[0].area(), 0.0);
        assert!(close(nan[1].area(), BOUNDS.area()));
        assert!(squarify(&[0.0, 0.0], BOUNDS).iter().all(|r| r.area() == 0.0));
        assert!(squarify(&[], BOUNDS).is_empty());
    }
}

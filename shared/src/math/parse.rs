//! The metric-math grammar: numbers, series ids (`errors`, `m`), arrays (`[a, b]`),
//! upper-case function calls, and CloudWatch's operators, loosest first: `OR` / `||`,
//! `AND` / `&&`, the comparisons (`==`, `!=`, `<`, `<=`, `>`, `>=`), `+` and `-`, `*` and `/`,
//! unary `-`, then `^` (right-associative, so `-2 ^ 2` is `-(2 ^ 2)`).
//!
//! Every expression is also checked for what it yields ([`Kind`]): a rule compares one time
//! series, so `AVG(m) > 5` (a number) or `[m, errors]` (two series) is refused at load, not
//! at the first evaluation.

use std::fmt;

/// CloudWatch's own limit on a `MetricDataQuery` expression.
pub const MAX_LENGTH: usize = 2048;

/// How deeply expressions may nest: far beyond any rule, and a bound on the parser's stack.
pub const MAX_DEPTH: usize = 64;

/// A parse or type error, with the byte offset in the expression it was found at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MathError {
    pub at: usize,
    pub message: String,
}

impl fmt::Display for MathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.at + 1, self.message)
    }
}

impl std::error::Error for MathError {}

fn fail<T>(at: usize, message: impl Into<String>) -> Result<T, MathError> {
    Err(MathError {
        at,
        message: message.into(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
        }
    }

    /// Comparisons and logical operators: 1 for true, 0 for false.
    pub fn is_boolean(self) -> bool {
        !matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow
        )
    }
}

/// The functions the engine implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    Abs,
    Avg,
    Ceil,
    Diff,
    Fill,
    Floor,
    If,
    Log,
    Log10,
    Max,
    Min,
    Period,
    Rate,
    Sum,
    TimeSeries,
}

impl Function {
    pub const ALL: [Function; 15] = [
        Function::Abs,
        Function::Avg,
        Function::Ceil,
        Function::Diff,
        Function::Fill,
        Function::Floor,
        Function::If,
        Function::Log,
        Function::Log10,
        Function::Max,
        Function::Min,
        Function::Period,
        Function::Rate,
        Function::Sum,
        Function::TimeSeries,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::Abs => "ABS",
            Function::Avg => "AVG",
            Function::Ceil => "CEIL",
            Function::Diff => "DIFF",
            Function::Fill => "FILL",
            Function::Floor => "FLOOR",
            Function::If => "IF",
            Function::Log => "LOG",
            Function::Log10 => "LOG10",
            Function::Max => "MAX",
            Function::Min => "MIN",
            Function::Period => "PERIOD",
            Function::Rate => "RATE",
            Function::Sum => "SUM",
            Function::TimeSeries => "TIME_SERIES",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The fewest and most arguments it takes.
    fn arity(self) -> (usize, usize) {
        match self {
            Function::Fill => (2, 2),
            Function::If => (2, 3),
            _ => (1, 1),
        }
    }
}

/// How `FILL` fills a gap when not with a number or a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillMode {
    /// The newest real value before the gap.
    Repeat,
    /// A straight line between the real values on either side of the gap.
    Linear,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Number(f64),
    /// A series by its id: the rule's metric `m` or one of its inputs.
    Id(String),
    Array(Vec<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Function, Vec<Expr>),
    /// `REPEAT` or `LINEAR`, only as `FILL`'s second argument.
    Mode(FillMode),
}

/// What an expression yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Scalar,
    Series,
    Array,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Scalar => "a number",
            Kind::Series => "a time series",
            Kind::Array => "an array of time series",
        }
    }
}

impl fmt::Display for Expr {
    /// Fully parenthesised, so that the text parses back to the same tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n) => write!(f, "{n}"),
            Expr::Id(id) => f.write_str(id),
            Expr::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Expr::Neg(x) => write!(f, "(-{x})"),
            Expr::Binary(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            Expr::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{arg}")?;
                }
                f.write_str(")")
            }
            Expr::Mode(FillMode::Repeat) => f.write_str("REPEAT"),
            Expr::Mode(FillMode::Linear) => f.write_str("LINEAR"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(f64),
    Id(String),
    Word(String),
    Op(BinOp),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Comma,
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, MathError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let two = bytes.get(i..i + 2);
        let token = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'0'..=b'9' | b'.' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                    let mut j = i + 1;
                    if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                        j += 1;
                    }
                    if j < bytes.len() && bytes[j].is_ascii_digit() {
                        while j < bytes.len() && bytes[j].is_ascii_digit() {
                            j += 1;
                        }
                        i = j;
                    }
                }
                let word = &text[start..i];
                match word.parse::<f64>() {
                    Ok(n) if n.is_finite() => Token::Number(n),
                    _ => return fail(start, format!("{word:?} is not a number")),
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                if c.is_ascii_lowercase() {
                    Token::Id(word.to_owned())
                } else {
                    Token::Word(word.to_owned())
                }
            }
            _ => {
                let (token, len) = match (c, two) {
                    (_, Some(b"==")) => (Token::Op(BinOp::Eq), 2),
                    (_, Some(b"!=")) => (Token::Op(BinOp::Ne), 2),
                    (_, Some(b"<=")) => (Token::Op(BinOp::Le), 2),
                    (_, Some(b">=")) => (Token::Op(BinOp::Ge), 2),
                    (_, Some(b"&&")) => (Token::Op(BinOp::And), 2),
                    (_, Some(b"||")) => (Token::Op(BinOp::Or), 2),
                    (b'<', _) => (Token::Op(BinOp::Lt), 1),
                    (b'>', _) => (Token::Op(BinOp::Gt), 1),
                    (b'+', _) => (Token::Op(BinOp::Add), 1),
                    (b'-', _) => (Token::Op(BinOp::Sub), 1),
                    (b'*', _) => (Token::Op(BinOp::Mul), 1),
                    (b'/', _) => (Token::Op(BinOp::Div), 1),
                    (b'^', _) => (Token::Op(BinOp::Pow), 1),
                    (b'(', _) => (Token::Open, 1),
                    (b')', _) => (Token::Close, 1),
                    (b'[', _) => (Token::OpenBracket, 1),
                    (b']', _) => (Token::CloseBracket, 1),
                    (b',', _) => (Token::Comma, 1),
                    _ => {
                        let ch = text[start..].chars().next().unwrap_or('?');
                        return fail(start, format!("unexpected {ch:?}"));
                    }
                };
                i += len;
                token
            }
        };
        out.push((start, token));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.tokens.get(self.next).map_or(self.end, |(at, _)| *at)
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.next).map(|(_, t)| t.clone());
        self.next += 1;
        t
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), MathError> {
        if self.peek() == Some(want) {
            self.next += 1;
            Ok(())
        } else {
            fail(self.at(), format!("expected {what}"))
        }
    }

    fn enter(&mut self) -> Result<(), MathError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return fail(self.at(), format!("nested more than {MAX_DEPTH} deep"));
        }
        Ok(())
    }

    fn binary_op(&self) -> Option<BinOp> {
        match self.peek() {
            Some(Token::Op(op)) => Some(*op),
            Some(Token::Word(w)) if w == "AND" => Some(BinOp::And),
            Some(Token::Word(w)) if w == "OR" => Some(BinOp::Or),
            _ => None,
        }
    }

    /// One level of left-associative binary operators, `ops` over `operand`. Each operator of
    /// a chain is one level deeper in the tree (`a + b + c` is `(a + b) + c`), so each counts
    /// toward [`MAX_DEPTH`]: a long chain is refused, not a tree too deep to walk.
    fn left(
        &mut self,
        ops: &[BinOp],
        operand: fn(&mut Self) -> Result<Expr, MathError>,
    ) -> Result<Expr, MathError> {
        let mut lhs = operand(self)?;
        let mut added = 0;
        let chained = loop {
            let Some(op) = self.binary_op().filter(|op| ops.contains(op)) else {
                break Ok(lhs);
            };
            self.next += 1;
            added += 1;
            if let Err(e) = self.enter() {
                break Err(e);
            }
            match operand(self) {
                Ok(rhs) => lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs)),
                Err(e) => break Err(e),
            }
        };
        self.depth -= added;
        chained
    }

    fn expr(&mut self) -> Result<Expr, MathError> {
        self.enter()?;
        let e = self.left(&[BinOp::Or], Self::and);
        self.depth -= 1;
        e
    }

    fn and(&mut self) -> Result<Expr, MathError> {
        self.left(&[BinOp::And], Self::comparison)
    }

    /// At most one comparison: `1 < m < 3` would read as `(1 < m) < 3`, true whatever `m` is,
    /// so it is refused rather than guessed at (`1 < m AND m < 3` says it).
    fn comparison(&mut self) -> Result<Expr, MathError> {
        const COMPARISONS: [BinOp; 6] = [
            BinOp::Eq,
            BinOp::Ne,
            BinOp::Lt,
            BinOp::Le,
            BinOp::Gt,
            BinOp::Ge,
        ];
        let lhs = self.sum()?;
        let Some(op) = self.binary_op().filter(|op| COMPARISONS.contains(op)) else {
            return Ok(lhs);
        };
        self.next += 1;
        let rhs = self.sum()?;
        if self.binary_op().is_some_and(|op| COMPARISONS.contains(&op)) {
            return fail(
                self.at(),
                "comparisons do not chain: write `a < b AND b < c`",
            );
        }
        Ok(Expr::Binary(op, Box::new(lhs), Box::new(rhs)))
    }

    fn sum(&mut self) -> Result<Expr, MathError> {
        self.left(&[BinOp::Add, BinOp::Sub], Self::product)
    }

    fn product(&mut self) -> Result<Expr, MathError> {
        self.left(&[BinOp::Mul, BinOp::Div], Self::unary)
    }

    fn unary(&mut self) -> Result<Expr, MathError> {
        if self.peek() == Some(&Token::Op(BinOp::Sub)) {
            self.next += 1;
            self.enter()?;
            let x = self.unary();
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(x?)));
        }
        let base = self.primary()?;
        if self.peek() == Some(&Token::Op(BinOp::Pow)) {
            self.next += 1;
            self.enter()?;
            let exponent = self.unary();
            self.depth -= 1;
            return Ok(Expr::Binary(
                BinOp::Pow,
                Box::new(base),
                Box::new(exponent?),
            ));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<Expr, MathError> {
        let at = self.at();
        match self.bump() {
            Some(Token::Number(n)) => Ok(Expr::Number(n)),
            Some(Token::Id(id)) => Ok(Expr::Id(id)),
            Some(Token::Open) => {
                let e = self.expr()?;
                self.expect(&Token::Close, "`)`")?;
                Ok(e)
            }
            Some(Token::OpenBracket) => {
                let items = self.list(&Token::CloseBracket, "`,` or `]`")?;
                Ok(Expr::Array(items))
            }
            Some(Token::Word(w)) => match w.as_str() {
                "REPEAT" => Ok(Expr::Mode(FillMode::Repeat)),
                "LINEAR" => Ok(Expr::Mode(FillMode::Linear)),
                name => {
                    let Some(func) = Function::from_name(name) else {
                        let known: Vec<&str> = Function::ALL.iter().map(|f| f.name()).collect();
                        return fail(
                            at,
                            format!(
                                "{name} is not a function this engine evaluates ({})",
                                known.join(", ")
                            ),
                        );
                    };
                    self.expect(&Token::Open, &format!("`(` after {name}"))?;
                    let args = self.list(&Token::Close, "`,` or `)`")?;
                    let (lo, hi) = func.arity();
                    if args.len() < lo || args.len() > hi {
                        let want = if lo == hi {
                            format!("{lo}")
                        } else {
                            format!("{lo} to {hi}")
                        };
                        return fail(
                            at,
                            format!("{name} takes {want} arguments, not {}", args.len()),
                        );
                    }
                    Ok(Expr::Call(func, args))
                }
            },
            Some(_) => fail(at, "expected a number, a series id, `(`, `[` or a function"),
            None => fail(at, "the expression ends too early"),
        }
    }

    /// Comma-separated expressions up to `close` (at least one).
    fn list(&mut self, close: &Token, what: &str) -> Result<Vec<Expr>, MathError> {
        let mut items = vec![self.expr()?];
        loop {
            match self.peek() {
                Some(Token::Comma) => {
                    self.next += 1;
                    items.push(self.expr()?);
                }
                Some(t) if t == close => {
                    self.next += 1;
                    return Ok(items);
                }
                _ => return fail(self.at(), format!("expected {what}")),
            }
        }
    }
}

/// Parses an expression; it must yield one time series ([`check`]).
pub fn parse(text: &str) -> Result<Expr, MathError> {
    let expr = parse_any(text)?;
    check(&expr)?;
    Ok(expr)
}

/// Parses an expression whatever it yields.
pub fn parse_any(text: &str) -> Result<Expr, MathError> {
    if text.len() > MAX_LENGTH {
        return fail(
            MAX_LENGTH,
            format!("longer than CloudWatch's {MAX_LENGTH} characters"),
        );
    }
    let tokens = lex(text)?;
    if tokens.is_empty() {
        return fail(0, "the expression is empty");
    }
    let mut p = Parser {
        tokens,
        next: 0,
        end: text.len(),
        depth: 0,
    };
    let expr = p.expr()?;
    if p.next < p.tokens.len() {
        return fail(p.at(), "unexpected text after the expression");
    }
    Ok(expr)
}

/// Refuses an expression that does not yield one time series: the value a rule compares.
pub fn check(expr: &Expr) -> Result<(), MathError> {
    match expr.kind()? {
        Kind::Series => Ok(()),
        other => fail(
            0,
            format!(
                "the expression gives {}; a rule compares a time series",
                other.noun()
            ),
        ),
    }
}

impl Expr {
    /// The series ids it reads, each once, in order of first use.
    pub fn ids(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.visit_ids(&mut out);
        out
    }

    fn visit_ids<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Id(id) => {
                if !out.contains(&id.as_str()) {
                    out.push(id);
                }
            }
            Expr::Array(items) | Expr::Call(_, items) => {
                for item in items {
                    item.visit_ids(out);
                }
            }
            Expr::Neg(x) => x.visit_ids(out),
            Expr::Binary(_, a, b) => {
                a.visit_ids(out);
                b.visit_ids(out);
            }
            Expr::Number(_) | Expr::Mode(_) => {}
        }
    }

    /// What the expression yields, or why its parts do not fit together.
    pub fn kind(&self) -> Result<Kind, MathError> {
        let wrong = |what: String| fail(0, what);
        match self {
            Expr::Number(_) => Ok(Kind::Scalar),
            Expr::Id(_) => Ok(Kind::Series),
            Expr::Mode(_) => wrong(format!("{self} is only FILL's second argument")),
            Expr::Neg(x) => x.kind(),
            Expr::Array(items) => {
                for item in items {
                    if item.kind()? == Kind::Scalar {
                        return wrong(format!("{item} in {self} is a number, not a time series"));
                    }
                }
                Ok(Kind::Array)
            }
            Expr::Binary(op, a, b) => {
                let (ka, kb) = (a.kind()?, b.kind()?);
                match (ka, kb) {
                    (Kind::Array, Kind::Array) => wrong(format!(
                        "{self}: {} between two arrays of time series",
                        op.symbol()
                    )),
                    (Kind::Array, _) | (_, Kind::Array) if op.is_boolean() => wrong(format!(
                        "{self}: {} compares time series one at a time, not arrays",
                        op.symbol()
                    )),
                    (Kind::Array, _) | (_, Kind::Array) => Ok(Kind::Array),
                    (Kind::Scalar, Kind::Scalar) => Ok(Kind::Scalar),
                    _ => Ok(Kind::Series),
                }
            }
            Expr::Call(func, args) => {
                // Every argument must yield a value, but FILL's REPEAT or LINEAR.
                let kinds: Vec<Kind> = args
                    .iter()
                    .enumerate()
                    .filter(|(i, a)| {
                        !(*func == Function::Fill && *i == 1 && matches!(a, Expr::Mode(_)))
                    })
                    .map(|(_, a)| a.kind())
                    .collect::<Result<_, _>>()?;
                let first = kinds.first().copied().unwrap_or(Kind::Scalar);
                let name = func.name();
                match func {
                    Function::Abs
                    | Function::Ceil
                    | Function::Floor
                    | Function::Log
                    | Function::Log10 => Ok(first),
                    Function::Diff | Function::Rate => {
                        if first == Kind::Scalar {
                            return wrong(format!("{name} takes a time series, not a number"));
                        }
                        Ok(first)
                    }
                    Function::Sum | Function::Avg | Function::Min | Function::Max => match first {
                        Kind::Series => Ok(Kind::Scalar),
                        Kind::Array => Ok(Kind::Series),
                        Kind::Scalar => wrong(format!("{name} takes a time series or an array")),
                    },
                    Function::Fill => {
                        if first == Kind::Scalar {
                            return wrong("FILL fills a time series, not a number".to_owned());
                        }
                        // The filler's kind, typed once above (a REPEAT or LINEAR has none):
                        // typing it again here made nested FILLs cost 2^n.
                        if kinds.get(1) == Some(&Kind::Array) {
                            return wrong(
                                "FILL's filler is a number or one time series".to_owned(),
                            );
                        }
                        Ok(first)
                    }

                    Function::If => {
                        if kinds.contains(&Kind::Array) {
                            return wrong(
                                "IF takes numbers and time series, not arrays".to_owned(),
                            );
                        }
                        if !kinds.contains(&Kind::Series) {
                            return wrong("IF needs a time series among its arguments".to_owned());
                        }
                        Ok(Kind::Series)
                    }
                    Function::Period => match &args[0] {
                        Expr::Id(_) => Ok(Kind::Scalar),
                        _ => wrong("PERIOD takes a series id (m, or an input)".to_owned()),
                    },
                    Function::TimeSeries => {
                        if first != Kind::Scalar {
                            return wrong("TIME_SERIES takes a number".to_owned());
                        }
                        Ok(Kind::Series)
                    }
                }
            }
        }
    }
}

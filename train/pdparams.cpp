#include "train/pdparams.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_map>

#include "base/error.h"

namespace engine::train {
namespace {

// Opcodes (CPython Lib/pickle.py, protocols 2-4) that this reader executes.
enum Op : uint8_t {
  MARK = '(',
  STOP = '.',
  POP = '0',
  POP_MARK = '1',
  DUP = '2',
  BININT = 'J',
  BININT1 = 'K',
  BININT2 = 'M',
  NONE = 'N',
  REDUCE = 'R',
  BINSTRING = 'T',
  SHORT_BINSTRING = 'U',
  BINUNICODE = 'X',
  APPEND = 'a',
  BUILD = 'b',
  GLOBAL = 'c',
  DICT = 'd',
  EMPTY_DICT = '}',
  APPENDS = 'e',
  BINGET = 'h',
  LONG_BINGET = 'j',
  LIST = 'l',
  EMPTY_LIST = ']',
  BINPUT = 'q',
  LONG_BINPUT = 'r',
  SETITEM = 's',
  TUPLE = 't',
  EMPTY_TUPLE = ')',
  SETITEMS = 'u',
  BINFLOAT = 'G',
  BINBYTES = 'B',
  SHORT_BINBYTES = 'C',
  PROTO = 0x80,
  TUPLE1 = 0x85,
  TUPLE2 = 0x86,
  TUPLE3 = 0x87,
  NEWTRUE = 0x88,
  NEWFALSE = 0x89,
  LONG1 = 0x8a,
  LONG4 = 0x8b,
  SHORT_BINUNICODE = 0x8c,
  BINUNICODE8 = 0x8d,
  BINBYTES8 = 0x8e,
  STACK_GLOBAL = 0x93,
  MEMOIZE = 0x94,
  FRAME = 0x95,
};

const char* op_name(uint8_t op) {
  switch (op) {
    case MARK:
      return "MARK";
    case STOP:
      return "STOP";
    case POP:
      return "POP";
    case POP_MARK:
      return "POP_MARK";
    case DUP:
      return "DUP";
    case BININT:
      return "BININT";
    case BININT1:
      return "BININT1";
    case BININT2:
      return "BININT2";
    case NONE:
      return "NONE";
    case REDUCE:
      return "REDUCE";
    case BINSTRING:
      return "BINSTRING";
    case SHORT_BINSTRING:
      return "SHORT_BINSTRING";
    case BINUNICODE:
      return "BINUNICODE";
    case APPEND:
      return "APPEND";
    case BUILD:
      return "BUILD";
    case GLOBAL:
      return "GLOBAL";
    case DICT:
      return "DICT";
    case EMPTY_DICT:
      return "EMPTY_DICT";
    case APPENDS:
      return "APPENDS";
    case BINGET:
      return "BINGET";
    case LONG_BINGET:
      return "LONG_BINGET";
    case LIST:
      return "LIST";
    case EMPTY_LIST:
      return "EMPTY_LIST";
    case BINPUT:
      return "BINPUT";
    case LONG_BINPUT:
      return "LONG_BINPUT";
    case SETITEM:
      return "SETITEM";
    case TUPLE:
      return "TUPLE";
    case EMPTY_TUPLE:
      return "EMPTY_TUPLE";
    case SETITEMS:
      return "SETITEMS";
    case BINFLOAT:
      return "BINFLOAT";
    case BINBYTES:
      return "BINBYTES";
    case SHORT_BINBYTES:
      return "SHORT_BINBYTES";
    case PROTO:
      return "PROTO";
    case TUPLE1:
      return "TUPLE1";
    case TUPLE2:
      return "TUPLE2";
    case TUPLE3:
      return "TUPLE3";
    case NEWTRUE:
      return "NEWTRUE";
    case NEWFALSE:
      return "NEWFALSE";
    case LONG1:
      return "LONG1";
    case LONG4:
      return "LONG4";
    case SHORT_BINUNICODE:
      return "SHORT_BINUNICODE";
    case BINUNICODE8:
      return "BINUNICODE8";
    case BINBYTES8:
      return "BINBYTES8";
    case STACK_GLOBAL:
      return "STACK_GLOBAL";
    case MEMOIZE:
      return "MEMOIZE";
    case FRAME:
      return "FRAME";
    // Known but not executed (protocol 0/1 text forms, objects, persistent ids, protocol 5 buffers).
    case 'I':
      return "INT";
    case 'L':
      return "LONG";
    case 'F':
      return "FLOAT";
    case 'S':
      return "STRING";
    case 'V':
      return "UNICODE";
    case 'p':
      return "PUT";
    case 'g':
      return "GET";
    case 'i':
      return "INST";
    case 'o':
      return "OBJ";
    case 0x81:
      return "NEWOBJ";
    case 0x92:
      return "NEWOBJ_EX";
    case 'P':
      return "PERSID";
    case 'Q':
      return "BINPERSID";
    case 0x82:
      return "EXT1";
    case 0x83:
      return "EXT2";
    case 0x84:
      return "EXT4";
    case 0x8f:
      return "EMPTY_SET";
    case 0x90:
      return "ADDITEMS";
    case 0x91:
      return "FROZENSET";
    case 0x96:
      return "BYTEARRAY8";
    case 0x97:
      return "NEXT_BUFFER";
    case 0x98:
      return "READONLY_BUFFER";
  }
  return "unknown";
}

// Python values of the subset. Owned by the machine's arena (raw pointers between them), so cycles
// built through the memo and deep nesting cost no recursion when freed.
struct Obj {
  enum Kind : uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Dtype, Array } kind;
  int64_t i = 0;
  double f = 0;
  std::string s;             // Str (UTF-8), Global ("module.name"), Dtype (descr, e.g. "f4")
  const char* bp = nullptr;  // Bytes: a view into the input or into `owned`
  size_t bn = 0;
  std::string owned;
  bool py2_str = false;        // Bytes from SHORT_BINSTRING/BINSTRING: a Python 2 str (text or data)
  std::vector<Obj*> items;     // Tuple, List; Dict: key0, value0, key1, value1, ...
  char byteorder = '=';        // Dtype
  bool built = false;          // Dtype / Array: BUILD done
  std::vector<int64_t> shape;  // Array
  Obj* dtype = nullptr;        // Array
  bool fortran = false;        // Array
  Obj* data = nullptr;         // Array: Bytes
};

const char* kind_name(Obj::Kind k) {
  switch (k) {
    case Obj::None:
      return "None";
    case Obj::Bool:
      return "bool";
    case Obj::Int:
      return "int";
    case Obj::Float:
      return "float";
    case Obj::Str:
      return "str";
    case Obj::Bytes:
      return "bytes";
    case Obj::Tuple:
      return "tuple";
    case Obj::List:
      return "list";
    case Obj::Dict:
      return "dict";
    case Obj::Global:
      return "global";
    case Obj::Dtype:
      return "numpy.dtype";
    case Obj::Array:
      return "numpy.ndarray";
  }
  return "?";
}

// Control characters escaped and long names cut, for messages.
std::string quoted(const std::string& s) {
  std::string r = "'";
  for (size_t k = 0; k < s.size() && k < 200; ++k) {
    const unsigned char c = (unsigned char)s[k];
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      r += buf;
    } else {
      r += (char)c;
    }
  }
  if (s.size() > 200) r += "...";
  return r + "'";
}

class Unpickler {
 public:
  Unpickler(const char* d, size_t n, const std::string& source) : d_(d), n_(n), src_(source) {}

  Obj* run();
  int protocol() const { return protocol_; }

  // Python 2 strings are text for keys and descriptors: latin-1 bytes -> UTF-8.
  static std::string text_of(const Obj* o) {
    if (o->kind == Obj::Str) return o->s;
    std::string r;
    for (size_t k = 0; k < o->bn; ++k) {
      const unsigned char c = (unsigned char)o->bp[k];
      if (c < 0x80) {
        r += (char)c;
      } else {
        r += (char)(0xC0 | (c >> 6));
        r += (char)(0x80 | (c & 0x3F));
      }
    }
    return r;
  }
  static bool is_text(const Obj* o) { return o->kind == Obj::Str || (o->kind == Obj::Bytes && o->py2_str); }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    char op[8];
    std::snprintf(op, sizeof op, "0x%02x", op_);
    fail(src_, ": byte ", op_pos_, ": opcode ", op, " (", op_name(op_), "): ", what);
  }
  Obj* make(Obj::Kind k) {
    arena_.push_back(std::make_unique<Obj>());
    arena_.back()->kind = k;
    return arena_.back().get();
  }
  const char* take(size_t len) {
    if (len > n_ - pos_)
      bad("truncated: needs " + std::to_string(len) + " more bytes, the file has " + std::to_string(n_ - pos_));
    const char* p = d_ + pos_;
    pos_ += len;
    return p;
  }
  uint64_t le(size_t len) {
    const unsigned char* p = (const unsigned char*)take(len);
    uint64_t v = 0;
    for (size_t k = 0; k < len; ++k) v |= (uint64_t)p[k] << (8 * k);
    return v;
  }
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  Obj* pop() {
    if (stack_.size() <= base()) bad("stack underflow");
    Obj* o = stack_.back();
    stack_.pop_back();
    return o;
  }
  Obj* top() {
    if (stack_.size() <= base()) bad("stack underflow");
    return stack_.back();
  }
  std::vector<Obj*> pop_mark() {
    if (marks_.empty()) bad("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Obj*> items(stack_.begin() + (std::ptrdiff_t)m, stack_.end());
    stack_.resize(m);
    return items;
  }
  Obj* bytes_view(const char* p, size_t len, bool py2) {
    Obj* o = make(Obj::Bytes);
    o->bp = p;
    o->bn = len;
    o->py2_str = py2;
    return o;
  }
  Obj* str(const char* p, size_t len) {
    Obj* o = make(Obj::Str);
    o->s.assign(p, len);
    return o;
  }
  size_t len_checked(uint64_t len) {
    if (len > n_ - pos_)
      bad("truncated: a length of " + std::to_string(len) + " bytes, the file has " + std::to_string(n_ - pos_) +
          " left");
    return (size_t)len;
  }
  void memo_put(uint64_t idx) { memo_[idx] = top(); }
  Obj* memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) bad("memo entry " + std::to_string(idx) + " was never stored");
    return it->second;
  }
  void set_item(Obj* dict, Obj* k, Obj* v) {
    if (dict->kind != Obj::Dict) bad(std::string("SETITEM on a ") + kind_name(dict->kind) + ", expected a dict");
    dict->items.push_back(k);
    dict->items.push_back(v);
  }
  void append(Obj* list, Obj* v) {
    if (list->kind != Obj::List) bad(std::string("APPEND on a ") + kind_name(list->kind) + ", expected a list");
    list->items.push_back(v);
  }
  Obj* global(const std::string& module, const std::string& name);
  Obj* reduce(Obj* callable, Obj* args);
  void build(Obj* obj, Obj* state);
  Obj* latin1_encode(const std::string& utf8);

  const char* d_;
  size_t n_;
  std::string src_;
  size_t pos_ = 0, op_pos_ = 0;
  uint8_t op_ = 0;
  int protocol_ = 0;
  std::vector<std::unique_ptr<Obj>> arena_;
  std::vector<Obj*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Obj*> memo_;
};

Obj* Unpickler::global(const std::string& module, const std::string& name) {
  const std::string full = module + "." + name;
  // The only callables paddle.save's output needs (see pdparams.h); __builtin__ is Python 2's name.
  static const char* const allowed[] = {"numpy.core.multiarray._reconstruct",
                                        "numpy._core.multiarray._reconstruct",
                                        "numpy.ndarray",
                                        "numpy.dtype",
                                        "_codecs.encode",
                                        "collections.OrderedDict",
                                        "builtins.tuple",
                                        "__builtin__.tuple",
                                        "builtins.bytes",
                                        "__builtin__.bytes"};
  for (const char* a : allowed)
    if (full == a) {
      Obj* g = make(Obj::Global);
      g->s = full;
      return g;
    }
  bad("global " + quoted(full) +
      " is not allowed (a .pdparams file holds numpy arrays in dicts, lists and tuples; nothing else is executed)");
}

Obj* Unpickler::latin1_encode(const std::string& u) {
  // str.encode('latin1'): each code point below 256 becomes one byte.
  Obj* o = make(Obj::Bytes);
  o->owned.reserve(u.size());
  for (size_t k = 0; k < u.size();) {
    const unsigned char c = (unsigned char)u[k];
    if (c < 0x80) {
      o->owned += (char)c;
      k += 1;
    } else if ((c & 0xE0) == 0xC0 && k + 1 < u.size() && c <= 0xC3 && ((unsigned char)u[k + 1] & 0xC0) == 0x80) {
      o->owned += (char)(((c & 0x1F) << 6) | ((unsigned char)u[k + 1] & 0x3F));
      k += 2;
    } else {
      bad("_codecs.encode(..., 'latin1') of a string with a character outside latin-1 at index " + std::to_string(k));
    }
  }
  o->bp = o->owned.data();
  o->bn = o->owned.size();
  return o;
}

Obj* Unpickler::reduce(Obj* callable, Obj* args) {
  if (callable->kind != Obj::Global)
    bad(std::string("REDUCE of a ") + kind_name(callable->kind) + ", expected a global");
  if (args->kind != Obj::Tuple)
    bad(std::string("REDUCE arguments are a ") + kind_name(args->kind) + ", expected a tuple");
  const std::string& g = callable->s;
  const auto& a = args->items;
  if (g == "numpy.core.multiarray._reconstruct" || g == "numpy._core.multiarray._reconstruct") {
    if (a.size() != 3 || a[0]->kind != Obj::Global || a[0]->s != "numpy.ndarray")
      bad("_reconstruct expects (numpy.ndarray, shape, typecode)");
    return make(Obj::Array);  // filled by BUILD
  }
  if (g == "numpy.dtype") {
    if (a.empty() || !is_text(a[0])) bad("numpy.dtype expects a type string first");
    Obj* d = make(Obj::Dtype);
    d->s = text_of(a[0]);
    return d;
  }
  if (g == "_codecs.encode") {
    if (a.size() != 2 || a[0]->kind != Obj::Str || a[1]->kind != Obj::Str ||
        (a[1]->s != "latin1" && a[1]->s != "latin-1"))
      bad("_codecs.encode expects (str, 'latin1')");
    return latin1_encode(a[0]->s);
  }
  if (g == "collections.OrderedDict") {
    Obj* d = make(Obj::Dict);
    if (a.empty()) return d;
    if (a.size() != 1 || (a[0]->kind != Obj::List && a[0]->kind != Obj::Tuple))
      bad("OrderedDict expects no arguments or a list of pairs");
    for (Obj* p : a[0]->items) {
      if ((p->kind != Obj::Tuple && p->kind != Obj::List) || p->items.size() != 2)
        bad("OrderedDict item is not a pair");
      set_item(d, p->items[0], p->items[1]);
    }
    return d;
  }
  if (g == "builtins.tuple" || g == "__builtin__.tuple") {
    Obj* t = make(Obj::Tuple);
    if (a.empty()) return t;
    if (a.size() != 1 || (a[0]->kind != Obj::Tuple && a[0]->kind != Obj::List)) bad("tuple expects one tuple or list");
    t->items = a[0]->items;
    return t;
  }
  if (g == "builtins.bytes" || g == "__builtin__.bytes") {
    // Protocol 2 pickles b'' as bytes() (CPython pickle.py save_bytes), e.g. an empty array's data.
    if (!a.empty()) bad("bytes expects no arguments");
    return bytes_view(d_, 0, false);
  }
  bad("global " + quoted(g) + " cannot be called");
}

void Unpickler::build(Obj* obj, Obj* state) {
  if (obj->kind == Obj::Dtype) {
    // numpy's dtype state: (version 3|4, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]).
    if (obj->built) bad("numpy.dtype built twice");
    if (state->kind != Obj::Tuple || state->items.size() < 8 || !is_text(state->items[1]))
      bad("numpy.dtype state is not (version, byteorder, ...)");
    for (int k = 2; k <= 4; ++k)
      if (state->items[k]->kind != Obj::None)
        bad("numpy.dtype with fields or a subarray (structured dtype) is not supported");
    const std::string bo = text_of(state->items[1]);
    if (bo.size() != 1 || (bo[0] != '<' && bo[0] != '>' && bo[0] != '|' && bo[0] != '='))
      bad("numpy.dtype byte order " + quoted(bo));
    obj->byteorder = bo[0];
    obj->built = true;
    return;
  }
  if (obj->kind == Obj::Array) {
    // ndarray.__setstate__: (version, shape, dtype, is_fortran, data) or, without the version, 4 items.
    if (obj->built) bad("numpy.ndarray built twice");
    if (state->kind != Obj::Tuple || (state->items.size() != 5 && state->items.size() != 4))
      bad("numpy.ndarray state is not (version, shape, dtype, is_fortran, data)");
    const size_t o = state->items.size() == 5 ? 1 : 0;
    Obj* shape = state->items[o];
    Obj* dtype = state->items[o + 1];
    Obj* fortran = state->items[o + 2];
    Obj* data = state->items[o + 3];
    if (shape->kind != Obj::Tuple && shape->kind != Obj::List) bad("numpy.ndarray shape is not a tuple");
    for (Obj* dim : shape->items) {
      if (dim->kind != Obj::Int || dim->i < 0) bad("numpy.ndarray shape holds a non-integer or negative dimension");
      obj->shape.push_back(dim->i);
    }
    if (dtype->kind != Obj::Dtype) bad(std::string("numpy.ndarray dtype is a ") + kind_name(dtype->kind));
    if (fortran->kind != Obj::Bool && fortran->kind != Obj::Int) bad("numpy.ndarray is_fortran is not a bool");
    if (data->kind == Obj::List) bad("numpy.ndarray of Python objects (dtype object) is not supported");
    if (data->kind == Obj::Str) data = latin1_encode(data->s);  // numpy accepts latin-1 text for the data
    if (data->kind != Obj::Bytes) bad(std::string("numpy.ndarray data is a ") + kind_name(data->kind));
    obj->dtype = dtype;
    obj->fortran = fortran->i != 0;
    obj->data = data;
    obj->built = true;
    return;
  }
  if (obj->kind == Obj::Dict && state->kind == Obj::None) return;  // OrderedDict without attributes
  bad(std::string("BUILD of a ") + kind_name(obj->kind) + " with a " + kind_name(state->kind) + " state");
}

Obj* Unpickler::run() {
  while (true) {
    op_pos_ = pos_;
    if (pos_ >= n_) {
      op_ = 0;
      fail(src_, ": byte ", pos_, ": truncated: the pickle ends before its STOP opcode");
    }
    op_ = (uint8_t)d_[pos_++];
    if (op_pos_ == 0 && op_ != PROTO) bad("not a pickle of protocol 2 or later (paddle.save writes 2 to 4)");
    switch (op_) {
      case PROTO: {
        const uint64_t v = le(1);
        if (v < 2 || v > 4) bad("pickle protocol " + std::to_string(v) + " (paddle.save writes 2 to 4)");
        protocol_ = (int)v;
        break;
      }
      case FRAME:
        len_checked(le(8));
        break;  // frames only group opcodes for buffered reading
      case STOP: {
        Obj* r = pop();
        return r;
      }
      case MARK:
        marks_.push_back(stack_.size());
        break;
      case POP:
        pop();
        break;
      case POP_MARK:
        pop_mark();
        break;
      case DUP:
        stack_.push_back(top());
        break;
      case NONE:
        stack_.push_back(make(Obj::None));
        break;
      case NEWTRUE:
      case NEWFALSE: {
        Obj* o = make(Obj::Bool);
        o->i = op_ == NEWTRUE;
        stack_.push_back(o);
        break;
      }
      case BININT1:
      case BININT2:
      case BININT: {
        Obj* o = make(Obj::Int);
        o->i = op_ == BININT1 ? (int64_t)le(1) : op_ == BININT2 ? (int64_t)le(2) : (int64_t)(int32_t)(uint32_t)le(4);
        stack_.push_back(o);
        break;
      }
      case LONG1:
      case LONG4: {
        const uint64_t len = op_ == LONG1 ? le(1) : le(4);
        if (len > 8) bad("integer of " + std::to_string(len) + " bytes (above 64 bits)");
        len_checked(len);
        uint64_t v = len ? le((size_t)len) : 0;
        if (len && len < 8 && (v >> (8 * len - 1)) & 1) v |= ~uint64_t(0) << (8 * len);  // sign-extend
        Obj* o = make(Obj::Int);
        o->i = (int64_t)v;
        stack_.push_back(o);
        break;
      }
      case BINFLOAT: {
        const unsigned char* p = (const unsigned char*)take(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];  // big-endian
        Obj* o = make(Obj::Float);
        std::memcpy(&o->f, &bits, 8);
        stack_.push_back(o);
        break;
      }
      case SHORT_BINUNICODE:
      case BINUNICODE:
      case BINUNICODE8: {
        const size_t len = len_checked(le(op_ == SHORT_BINUNICODE ? 1 : op_ == BINUNICODE ? 4 : 8));
        stack_.push_back(str(take(len), len));
        break;
      }
      case SHORT_BINBYTES:
      case BINBYTES:
      case BINBYTES8: {
        const size_t len = len_checked(le(op_ == SHORT_BINBYTES ? 1 : op_ == BINBYTES ? 4 : 8));
        stack_.push_back(bytes_view(take(len), len, false));
        break;
      }
      case SHORT_BINSTRING:
      case BINSTRING: {
        const uint64_t raw = le(op_ == SHORT_BINSTRING ? 1 : 4);
        if (op_ == BINSTRING && (int32_t)(uint32_t)raw < 0) bad("negative string length");
        const size_t len = len_checked(raw);
        stack_.push_back(bytes_view(take(len), len, true));
        break;
      }
      case EMPTY_DICT:
        stack_.push_back(make(Obj::Dict));
        break;
      case EMPTY_LIST:
        stack_.push_back(make(Obj::List));
        break;
      case EMPTY_TUPLE:
        stack_.push_back(make(Obj::Tuple));
        break;
      case TUPLE1:
      case TUPLE2:
      case TUPLE3: {
        const size_t k = op_ - TUPLE1 + 1;
        if (stack_.size() < base() + k) bad("stack underflow");
        Obj* t = make(Obj::Tuple);
        t->items.assign(stack_.end() - (std::ptrdiff_t)k, stack_.end());
        stack_.resize(stack_.size() - k);
        stack_.push_back(t);
        break;
      }
      case TUPLE:
      case LIST: {
        Obj* t = make(op_ == TUPLE ? Obj::Tuple : Obj::List);
        t->items = pop_mark();
        stack_.push_back(t);
        break;
      }
      case DICT: {
        std::vector<Obj*> items = pop_mark();
        if (items.size() % 2) bad("odd number of items for a dict");
        Obj* d = make(Obj::Dict);
        for (size_t k = 0; k < items.size(); k += 2) set_item(d, items[k], items[k + 1]);
        stack_.push_back(d);
        break;
      }
      case APPEND: {
        Obj* v = pop();
        append(top(), v);
        break;
      }
      case APPENDS: {
        std::vector<Obj*> items = pop_mark();
        Obj* list = top();
        for (Obj* v : items) append(list, v);
        break;
      }
      case SETITEM: {
        Obj* v = pop();
        Obj* k = pop();
        set_item(top(), k, v);
        break;
      }
      case SETITEMS: {
        std::vector<Obj*> items = pop_mark();
        if (items.size() % 2) bad("odd number of items for SETITEMS");
        Obj* d = top();
        for (size_t k = 0; k < items.size(); k += 2) set_item(d, items[k], items[k + 1]);
        break;
      }
      case BINPUT:
        memo_put(le(1));
        break;
      case LONG_BINPUT:
        memo_put(le(4));
        break;
      case MEMOIZE:
        memo_put(memo_.size());
        break;
      case BINGET:
        stack_.push_back(memo_get(le(1)));
        break;
      case LONG_BINGET:
        stack_.push_back(memo_get(le(4)));
        break;
      case GLOBAL: {
        // "module\nname\n"
        auto line = [&]() {
          const char* p = d_ + pos_;
          const void* nl = std::memchr(p, '\n', n_ - pos_);
          if (!nl) bad("truncated: GLOBAL without its newline");
          const size_t len = (size_t)((const char*)nl - p);
          pos_ += len + 1;
          return std::string(p, len);
        };
        const std::string module = line();
        const std::string name = line();
        stack_.push_back(global(module, name));
        break;
      }
      case STACK_GLOBAL: {
        Obj* name = pop();
        Obj* module = pop();
        if (module->kind != Obj::Str || name->kind != Obj::Str) bad("STACK_GLOBAL expects two strings");
        stack_.push_back(global(module->s, name->s));
        break;
      }
      case REDUCE: {
        Obj* args = pop();
        Obj* callable = pop();
        stack_.push_back(reduce(callable, args));
        break;
      }
      case BUILD: {
        Obj* state = pop();
        build(top(), state);
        break;
      }
      default:
        bad("not supported (a .pdparams file holds numpy arrays in dicts; nothing else is read)");
    }
  }
}

// ------------------------------------------------------------------ arrays -> tensors
struct DtypeInfo {
  const char* numpy_name;
  size_t size;
  DType engine;  // F32 also for the converted float16 / float64
};

bool dtype_info(const std::string& descr, DtypeInfo& out) {
  static const std::pair<const char*, DtypeInfo> table[] = {
      {"f4", {"float32", 4, DType::F32}}, {"f2", {"float16", 2, DType::F32}}, {"f8", {"float64", 8, DType::F32}},
      {"i8", {"int64", 8, DType::I64}},   {"i4", {"int32", 4, DType::I32}},   {"u1", {"uint8", 1, DType::U8}},
      {"b1", {"bool", 1, DType::U8}},
  };
  for (const auto& [d, info] : table)
    if (descr == d) {
      out = info;
      return true;
    }
  return false;
}

std::string numpy_name_of(const std::string& descr) {
  static const std::pair<const char*, const char*> names[] = {
      {"i1", "int8"},        {"i2", "int16"},    {"u2", "uint16 (Paddle stores bfloat16 tensors as uint16)"},
      {"u4", "uint32"},      {"u8", "uint64"},   {"c8", "complex64"},
      {"c16", "complex128"}, {"f16", "float128"}};
  for (const auto& [d, n] : names)
    if (descr == d) return n;
  return quoted(descr);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

Tensor to_tensor(const Obj* a, const std::string& name, const std::string& src, std::string& numpy_dtype) {
  if (!a->built) fail(src, ": tensor ", quoted(name), ": numpy array without its state (BUILD missing)");
  const Obj* dt = a->dtype;
  if (!dt->built) fail(src, ": tensor ", quoted(name), ": numpy dtype without its state (BUILD missing)");
  DtypeInfo info;
  if (!dtype_info(dt->s, info))
    fail(src, ": tensor ", quoted(name), ": dtype ", numpy_name_of(dt->s),
         " is not supported (float32, float16, float64, int64, int32, uint8, bool are)");
  numpy_dtype = info.numpy_name;
  uint64_t numel = 1;
  for (int64_t d : a->shape) {
    if (d != 0 && numel > (uint64_t(1) << 62) / (uint64_t)d)
      fail(src, ": tensor ", quoted(name), ": shape ", shape_str(a->shape), " is too large");
    numel *= (uint64_t)d;
  }
  if (numel > (uint64_t(1) << 62) / info.size || numel * info.size != a->data->bn)
    fail(src, ": tensor ", quoted(name), ": ", a->data->bn, " data bytes, expected ", numel * info.size, " for shape ",
         shape_str(a->shape), " of ", info.numpy_name);
  // Row-major, little-endian bytes: the file's own when they already are, else a converted copy.
  const char* raw = a->data->bp;
  std::string buf;
  const bool swap = dt->byteorder == '>' && info.size > 1;
  const bool fortran = a->fortran && a->shape.size() > 1 && numel > 1;
  if (swap) {
    buf.assign(a->data->bp, a->data->bn);
    for (size_t k = 0; k < buf.size(); k += info.size)
      std::reverse(buf.begin() + (std::ptrdiff_t)k, buf.begin() + (std::ptrdiff_t)(k + info.size));
    raw = buf.data();
  }
  if (fortran) {
    // Element at row-major index (i0, ..., ik) sits at sum(i_j * prod(d_0..d_j-1)) in column-major order.
    const size_t rank = a->shape.size();
    std::vector<uint64_t> fstride(rank, 1);
    for (size_t j = 1; j < rank; ++j) fstride[j] = fstride[j - 1] * (uint64_t)a->shape[j - 1];
    std::vector<int64_t> idx(rank, 0);
    std::string c(a->data->bn, '\0');
    uint64_t off = 0;
    for (uint64_t e = 0; e < numel; ++e) {
      std::memcpy(&c[e * info.size], &raw[off * info.size], info.size);
      for (size_t j = rank; j-- > 0;) {  // advance the row-major counter, keeping `off` in step
        if (++idx[j] < a->shape[j]) {
          off += fstride[j];
          break;
        }
        off -= fstride[j] * (uint64_t)(a->shape[j] - 1);
        idx[j] = 0;
      }
    }
    buf.swap(c);
    raw = buf.data();
  }
  Tensor t = Tensor::empty(a->shape, info.engine, Device::cpu());
  if (dt->s == "f2") {
    float* out = t.data<float>();
    for (uint64_t e = 0; e < numel; ++e) {
      uint16_t h;
      std::memcpy(&h, &raw[e * 2], 2);
      out[e] = half_to_float(h);
    }
  } else if (dt->s == "f8") {
    float* out = t.data<float>();
    for (uint64_t e = 0; e < numel; ++e) {
      double v;
      std::memcpy(&v, &raw[e * 8], 8);
      out[e] = (float)v;
    }
  } else if (a->data->bn) {
    std::memcpy(t.raw_data(), raw, a->data->bn);
  }
  return t;
}

// Concatenates the parts of arrays that paddle.save split (protocol 2/3, arrays above 1 GiB), as
// paddle's io_utils._pack_loaded_dict does: np.concatenate(parts).reshape(OriginShape).
void join_big_params(Obj* info, std::vector<std::pair<std::string, Obj*>>& entries, const std::string& src,
                     std::vector<std::unique_ptr<Obj>>& keep) {
  if (info->kind != Obj::Dict) fail(src, ": UnpackBigParamInfor@@ is a ", kind_name(info->kind), ", expected a dict");
  auto find = [&](const std::string& k) -> size_t {
    for (size_t e = 0; e < entries.size(); ++e)
      if (entries[e].first == k) return e;
    return entries.size();
  };
  for (size_t k = 0; k + 1 < info->items.size(); k += 2) {
    const std::string key = Unpickler::text_of(info->items[k]);
    const Obj* spec = info->items[k + 1];
    const Obj *shape = nullptr, *slices = nullptr;
    if (spec->kind == Obj::Dict)
      for (size_t j = 0; j + 1 < spec->items.size(); j += 2) {
        if (!Unpickler::is_text(spec->items[j])) continue;
        const std::string f = Unpickler::text_of(spec->items[j]);
        if (f == "OriginShape") shape = spec->items[j + 1];
        if (f == "slices") slices = spec->items[j + 1];
      }
    if (!shape || !slices || (shape->kind != Obj::Tuple && shape->kind != Obj::List) ||
        (slices->kind != Obj::List && slices->kind != Obj::Tuple) || slices->items.empty())
      fail(src, ": UnpackBigParamInfor@@[", quoted(key), "] is not {OriginShape: shape, slices: [names]}");
    auto joined = std::make_unique<Obj>();
    joined->kind = Obj::Array;
    joined->built = true;
    auto data = std::make_unique<Obj>();
    data->kind = Obj::Bytes;
    for (const Obj* d : shape->items) {
      if (d->kind != Obj::Int || d->i < 0) fail(src, ": UnpackBigParamInfor@@[", quoted(key), "]: bad OriginShape");
      joined->shape.push_back(d->i);
    }
    for (const Obj* part : slices->items) {
      const std::string pname = Unpickler::is_text(part) ? Unpickler::text_of(part) : std::string();
      const size_t e = find(pname);
      if (e == entries.size() || entries[e].second->kind != Obj::Array || !entries[e].second->built)
        fail(src, ": UnpackBigParamInfor@@[", quoted(key), "]: part ", quoted(pname), " is not an array of the file");
      const Obj* p = entries[e].second;
      if (p->fortran && p->shape.size() > 1) fail(src, ": part ", quoted(pname), " is Fortran-ordered");
      if (!joined->dtype) joined->dtype = p->dtype;
      if (p->dtype->s != joined->dtype->s || p->dtype->byteorder != joined->dtype->byteorder)
        fail(src, ": UnpackBigParamInfor@@[", quoted(key), "]: parts of different dtypes");
      data->owned.append(p->data->bp, p->data->bn);
      entries.erase(entries.begin() + (std::ptrdiff_t)e);
    }
    data->bp = data->owned.data();
    data->bn = data->owned.size();
    joined->data = data.get();
    const size_t at = find(key);
    if (at == entries.size())
      entries.emplace_back(key, joined.get());
    else
      entries[at].second = joined.get();
    keep.push_back(std::move(joined));
    keep.push_back(std::move(data));
  }
}

}  // namespace

PdparamsFile parse_pdparams(const char* data, size_t size, const std::string& source) {
  Unpickler up(data, size, source);
  Obj* root = up.run();
  if (root->kind != Obj::Dict)
    fail(source, ": the pickle holds a ", kind_name(root->kind),
         ", expected a dict of tensors (paddle.save of a state_dict)");
  // Python dict semantics: a repeated key keeps its first position and takes the last value.
  std::vector<std::pair<std::string, Obj*>> entries;
  std::unordered_map<std::string, size_t> index;
  Obj* big = nullptr;
  std::vector<std::string> other_keys;
  for (size_t k = 0; k + 1 < root->items.size(); k += 2) {
    if (!Unpickler::is_text(root->items[k]))
      fail(source, ": a top-level key is a ", kind_name(root->items[k]->kind), ", expected str");
    const std::string key = Unpickler::text_of(root->items[k]);
    Obj* v = root->items[k + 1];
    if (key == "UnpackBigParamInfor@@") {
      big = v;
      continue;
    }
    // (name, array): _pickle_save's form of a Tensor and paddle 2.1's.
    if (v->kind == Obj::Tuple && v->items.size() == 2 && Unpickler::is_text(v->items[0]) &&
        v->items[1]->kind == Obj::Array)
      v = v->items[1];
    if (v->kind != Obj::Array) {
      other_keys.push_back(key);
      continue;
    }
    auto [it, fresh] = index.emplace(key, entries.size());
    if (fresh)
      entries.emplace_back(key, v);
    else
      entries[it->second].second = v;
  }
  std::vector<std::unique_ptr<Obj>> keep;
  if (big) join_big_params(big, entries, source, keep);
  if (entries.empty()) {
    std::string keys;
    for (size_t k = 0; k < other_keys.size() && k < 5; ++k) keys += (k ? ", " : "") + quoted(other_keys[k]);
    fail(source, ": no tensors in the file (", other_keys.size(), " top-level entries without a numpy array",
         keys.empty() ? "" : ": ", keys, other_keys.size() > 5 ? ", ..." : "", ")");
  }
  PdparamsFile f;
  f.source = source;
  f.protocol = up.protocol();
  for (const auto& [name, arr] : entries) {
    PdparamsTensor t;
    t.name = name;
    t.tensor = to_tensor(arr, name, source, t.numpy_dtype);
    f.tensors.push_back(std::move(t));
  }
  return f;
}

PdparamsFile read_pdparams(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ENGINE_CHECK(in, path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  ENGINE_CHECK(!in.bad(), path, ": read error");
  const std::string bytes = ss.str();
  return parse_pdparams(bytes.data(), bytes.size(), path);
}

}  // namespace engine::train
